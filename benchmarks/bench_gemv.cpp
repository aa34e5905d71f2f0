// Dequant-GEMV/GEMM on the CPU against Eigen fp32 and against this machine's measured read bandwidth.
//
//   gemv/<format>/<N>x<K>/batch:<M>/threads:<T>   y (M x N) = x (M x K) W^T
//   memory/read/threads:<T>                        a vectorized sum over 1 GiB: the bandwidth the kernels aim at
//
// Formats: fp32_eigen (dense Eigen, rows split over threads like ours), u<b>g128 (uniform asymmetric, fp16 scale and
// zero per 128 inputs), u8 (uniform symmetric, one scale per row), lut<b> (a 2^b-entry fp16 table per row),
// u4g128+sparse0.45 (u4g128 plus 0.45% fp16 outliers in CSR), u4g128_int8 (u4g128 with int8 activations; counter
// rel_rms_err: relative RMS difference to the fp32-activation result on Gaussian activations); likewise
// u3g128_int8, u2g128_int8, lut4_int8, lut3_int8 and u4g128+sparse0.45_int8. The *_avx2 variants force the AVX2 path
// (on AVX-512 machines: what the VBMI kernel is measured against), *_avx2_prepared runs a PreparedMatrix on it (3-bit:
// the plane layout). The label names the kernel that ran.
// Each benchmark rotates over copies of its weights that together exceed 256 MB, so every call streams its weights
// from DRAM; bytes processed = weight bytes (codes, metadata, outliers) per call. scripts/bench.sh runs this with --benchmark_format=json and writes docs/benchmarks.md.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/kernels/cpu/multiply.hpp>

#include "read_bandwidth.hpp"
#include "test_matrices.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace {

using npft::Index;
using npft::Matrix;
using npft::MatrixView;
using npft::quant::Format;
using npft::quant::QuantizedMatrix;
namespace cpu = npft::kernels::cpu;

constexpr std::size_t rotation_bytes = std::size_t{320} << 20;  // > 256 MB: more than any cache

struct FormatSpec {
    const char* name;
    bool dense_fp32;
    Format format;
    int bits;
    Index group;            // 0: one group per row
    double outlier_percent;  // > 0: add CSR outliers
    bool int8_activations = false;
    cpu::Path path = cpu::Path::best;
    bool prepared = false;  // run a cpu::PreparedMatrix
};

const FormatSpec formats[] = {
    {"fp32_eigen", true, Format::uniform_asymmetric, 0, 0, 0.0},
    {"u4g128", false, Format::uniform_asymmetric, 4, 128, 0.0},
    {"u3g128", false, Format::uniform_asymmetric, 3, 128, 0.0},
    {"u2g128", false, Format::uniform_asymmetric, 2, 128, 0.0},
    {"u8", false, Format::uniform_symmetric, 8, 0, 0.0},
    {"lut4", false, Format::lut, 4, 0, 0.0},
    {"lut3", false, Format::lut, 3, 0, 0.0},
    {"u4g128+sparse0.45", false, Format::uniform_asymmetric, 4, 128, 0.45},
    {"u4g128_int8", false, Format::uniform_asymmetric, 4, 128, 0.0, true},
    {"u3g128_int8", false, Format::uniform_asymmetric, 3, 128, 0.0, true},
    {"u2g128_int8", false, Format::uniform_asymmetric, 2, 128, 0.0, true},
    {"lut4_int8", false, Format::lut, 4, 0, 0.0, true},
    {"lut3_int8", false, Format::lut, 3, 0, 0.0, true},
    {"u4g128+sparse0.45_int8", false, Format::uniform_asymmetric, 4, 128, 0.45, true},
    {"u4g128_int8_avx2", false, Format::uniform_asymmetric, 4, 128, 0.0, true, cpu::Path::avx2},
    {"u3g128_int8_avx2", false, Format::uniform_asymmetric, 3, 128, 0.0, true, cpu::Path::avx2},
    {"u3g128_int8_avx2_prepared", false, Format::uniform_asymmetric, 3, 128, 0.0, true, cpu::Path::avx2, true},
    {"u2g128_int8_avx2", false, Format::uniform_asymmetric, 2, 128, 0.0, true, cpu::Path::avx2},
};

struct Csr {
    std::vector<std::int32_t> row_offsets, columns;
    std::vector<npft::half> values;
    cpu::CsrView view(Index rows, Index cols) const {
        return {rows, cols, row_offsets.data(), columns.data(), values.data()};
    }
    std::size_t bytes() const {
        return (row_offsets.size() + columns.size()) * sizeof(std::int32_t) + values.size() * sizeof(npft::half);
    }
};

Csr random_outliers(Index rows, Index cols, double percent) {
    Csr s;
    const Index per_row = static_cast<Index>(std::lround(static_cast<double>(cols) * percent / 100.0));
    const npft::RandomKey key{1, npft::make_stream(3)};
    s.row_offsets.push_back(0);
    for (Index r = 0; r < rows; ++r) {
        // Sorted distinct columns: one per stride of cols / per_row, at a random offset inside it.
        const Index stride = cols / per_row;
        for (Index e = 0; e < per_row; ++e) {
            const auto words = npft::random_words(key, static_cast<std::uint64_t>(r * per_row + e));
            s.columns.push_back(static_cast<std::int32_t>(e * stride + static_cast<Index>(words[0] % static_cast<std::uint32_t>(stride))));
            s.values.push_back(npft::half(npft::bits_to_unit_float(words[1]) - 0.5f));
        }
        s.row_offsets.push_back(static_cast<std::int32_t>(s.columns.size()));
    }
    return s;
}

/// The rotating copies of one (format, shape); kept between the benchmarks of different batch and thread counts.
struct Workload {
    std::string key;
    std::vector<Matrix> dense;
    std::vector<QuantizedMatrix> quantized;
    std::vector<cpu::PreparedMatrix> prepared;  // when the format asks for it: instead of `quantized`, same weights
    std::vector<Csr> outliers;
    std::size_t bytes_per_copy = 0;
    std::size_t copies() const { return !dense.empty() ? dense.size() : !prepared.empty() ? prepared.size() : quantized.size(); }
};

Workload& workload(const FormatSpec& f, Index rows, Index cols) {
    static std::unique_ptr<Workload> cached;
    const std::string key = std::string(f.name) + "/" + std::to_string(rows) + "x" + std::to_string(cols);
    if (cached && cached->key == key) return *cached;
    cached.reset();  // free the previous copies first
    auto w = std::make_unique<Workload>();
    w->key = key;
    if (f.dense_fp32) {
        Matrix original = npft_test::gaussian_matrix(rows, cols, 1, 1);
        w->bytes_per_copy = static_cast<std::size_t>(original.size()) * sizeof(float);
        const std::size_t copies = std::max<std::size_t>(2, (rotation_bytes + w->bytes_per_copy - 1) / w->bytes_per_copy);
        for (std::size_t c = 0; c < copies; ++c) w->dense.push_back(original);
    } else {
        const QuantizedMatrix original = npft_test::random_quantized(f.format, f.bits, rows, cols, f.group, 1);
        Csr sparse;
        if (f.outlier_percent > 0) sparse = random_outliers(rows, cols, f.outlier_percent);
        w->bytes_per_copy = original.bytes() + (f.outlier_percent > 0 ? sparse.bytes() : 0);
        const std::size_t copies = std::max<std::size_t>(2, (rotation_bytes + w->bytes_per_copy - 1) / w->bytes_per_copy);
        w->quantized.push_back(original);  // the fp32-activation reference and the label use copy 0
        for (std::size_t c = 0; c < copies; ++c) {
            if (f.prepared) w->prepared.emplace_back(original);
            else if (c > 0) w->quantized.push_back(original);
            if (f.outlier_percent > 0) w->outliers.push_back(sparse);
        }
    }
    cached = std::move(w);
    return *cached;
}

/// The kernel multiply() runs for this format and batch (mirrors multiply_impl's choice).
std::string kernel_label(const FormatSpec& f, const QuantizedMatrix& w, Index batch) {
    if (f.dense_fp32) return "eigen";
    const cpu::Path path = cpu::kernel_path(w, f.path);
    if (!f.int8_activations || path == cpu::Path::portable) return cpu::path_name(path);
    switch (batch >= cpu::int8_gemm_min_batch ? cpu::int8_gemm_for(w, path) : cpu::Int8Gemm::none) {
        case cpu::Int8Gemm::avx512_vnni: return "avx512-vnni-gemm";
        case cpu::Int8Gemm::avx_vnni: return "avx-vnni-gemm";
        case cpu::Int8Gemm::avx2_maddubs: return "avx2-maddubs-gemm";
        case cpu::Int8Gemm::none: break;
    }
    if (!cpu::int8_kernel_applies(w)) return cpu::path_name(path);
    if (path == cpu::Path::avx512 && cpu::int8_vbmi_applies(w)) return "avx512-vbmi";
    return f.prepared && w.bits() == 3 ? "avx2-planes" : "avx2";
}

void gemv_benchmark(benchmark::State& state, const FormatSpec& f, Index rows, Index cols, Index batch, int threads) {
    Workload& w = workload(f, rows, cols);
    Matrix x(batch, cols);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = npft::gaussian(npft::RandomKey{2, npft::make_stream(4)}, static_cast<std::uint64_t>(i));
    Matrix y(batch, rows);
    const MatrixView<const float> xv = npft::as_matrix_view(x);
    const MatrixView<float> yv = npft::as_matrix_view(y);
    const cpu::MultiplyOptions options{threads, f.path, f.int8_activations ? cpu::Activations::int8 : cpu::Activations::fp32};
    if (f.int8_activations) {
        // The accuracy cost of int8 activations: relative RMS difference to the fp32-activation result.
        Matrix reference(batch, rows);
        cpu::multiply(w.quantized[0], xv, MatrixView<float>(npft::as_matrix_view(reference)), {threads, cpu::Path::best, cpu::Activations::fp32});
        cpu::multiply(w.quantized[0], xv, yv, options);
        state.counters["rel_rms_err"] = static_cast<double>((y - reference).norm() / reference.norm());
    }
    std::size_t call = 0;
    for (auto _ : state) {
        const std::size_t c = call++ % w.copies();
        if (f.dense_fp32) {
            const Matrix& weights = w.dense[c];
            cpu::parallel_rows(rows, threads, 64, [&](Index begin, Index end) {
                y.middleCols(begin, end - begin).noalias() = x * weights.middleRows(begin, end - begin).transpose();
            });
        } else if (f.prepared) {
            cpu::multiply(w.prepared[c], xv, yv, options);
        } else if (f.outlier_percent > 0) {
            cpu::multiply(w.quantized[c], w.outliers[c].view(rows, cols), xv, yv, options);
        } else {
            cpu::multiply(w.quantized[c], xv, yv, options);
        }
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(w.bytes_per_copy));
    state.SetLabel(f.dense_fp32 ? "eigen" : kernel_label(f, w.quantized[0], batch));
}

}  // namespace

int main(int argc, char** argv) {
    for (const int threads : {1, 2})
        benchmark::RegisterBenchmark(("memory/read/threads:" + std::to_string(threads)).c_str(),
                                     [threads](benchmark::State& s) { npft_bench::memory_read_benchmark(s, threads); })
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    const std::pair<npft::Index, npft::Index> shapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {4096, 14336}};
    for (const auto& [rows, cols] : shapes)
        for (const FormatSpec& f : formats)
            for (const npft::Index batch : {1, 4, 16, 64})
                for (const int threads : {1, 2}) {
                    const std::string name = std::string("gemv/") + f.name + "/" + std::to_string(rows) + "x" + std::to_string(cols) +
                                             "/batch:" + std::to_string(batch) + "/threads:" + std::to_string(threads);
                    benchmark::RegisterBenchmark(name.c_str(), [&f, rows = rows, cols = cols, batch, threads](benchmark::State& s) {
                        gemv_benchmark(s, f, rows, cols, batch, threads);
                    })->UseRealTime()->Unit(benchmark::kMicrosecond);
                }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
