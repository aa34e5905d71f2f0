// Prompt processing (batched multiply) at the compute limit: npft's int8-activation path against this machine's int8
// multiply-add peak, measured in the same run, and against two fp32 baselines: Eigen built with -march=native (this
// target's flags: benchmarks/CMakeLists.txt), so that Eigen gets every vector extension of the machine, and OpenBLAS
// cblas_sgemm with its own threads (when CMake found OpenBLAS, Debian libopenblas-dev; otherwise the program says so
// and runs without those rows).
//
//   peak/int8/<isa>                                   a register-only loop of int8 dot-product instructions
//   peak/fp32_fma/<isa>                               a register-only loop of fp32 FMAs (the fp32 compute limit)
//   prefill/<format>/<N>x<K>/batch:<M>/threads:<T>    y (M x N) = x (M x K) W^T
//
// Formats: u<b>g128_int8 (uniform asymmetric, groups of 128), u<b>_int8 (uniform symmetric, per channel), lut<b>_int8
// (a table per row), all with int8 activations; 8-bit rows run the fp32 kernels below int8_gemm_min_batch tokens.
// Formats ending in _avxvnni and _avx2 run the 256-bit GEMM (int8_gemm_256.hpp) with that dot product directly (the
// path of CPUs without AVX-512 VNNI), from int8_gemm_min_batch tokens; their of_int8_peak is of the peak of their
// own instruction (peak/int8/avx_vnni_256, peak/int8/avx2_maddubs).
//
// Timing: 1-thread rows are rated by process CPU time (what the core gave this run on a shared machine; equal to the
// real time on an idle one), 2-thread rows by real time; the peaks by this thread's CPU time.
// Counters: MACs/s (multiply-adds per second: M N K per call) and, for npft formats, of_int8_peak (MACs/s divided by
// the peak of the widest int8 instruction on this CPU, measured first, 1 thread: the threads:2 rows divide by twice
// that). Weights stay cache-resident between calls only as far as the cache holds them (4096 x 4096 4-bit: 8 MiB);
// at batch >= 8 the kernels are compute-bound, so this does not change the picture.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/kernels/cpu/multiply.hpp>

#if NPFT_BENCH_OPENBLAS
#include <cblas.h>
#endif

#include "int8_gemm_runner.hpp"
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

double int8_peak = 0.0;         ///< MACs/s of the widest int8 loop on one thread, set by the peak benchmarks (run first)
double avx_vnni_peak = 0.0;     ///< of vpdpbusd ymm (AVX-VNNI)
double avx2_maddubs_peak = 0.0; ///< of vpmaddubsw ymm

#if NPFT_CPU_X86
// Register-only loops: 12 independent accumulators (enough to hide a 4-5 cycle latency at 2 instructions per cycle),
// written in assembly so that the compiler neither spills nor folds them.
#define NPFT_ACC12(op) op " %[b], %[a], %[a0]\n\t" op " %[b], %[a], %[a1]\n\t" op " %[b], %[a], %[a2]\n\t" op " %[b], %[a], %[a3]\n\t" \
    op " %[b], %[a], %[a4]\n\t" op " %[b], %[a], %[a5]\n\t" op " %[b], %[a], %[a6]\n\t" op " %[b], %[a], %[a7]\n\t"                \
    op " %[b], %[a], %[a8]\n\t" op " %[b], %[a], %[a9]\n\t" op " %[b], %[a], %[a10]\n\t" op " %[b], %[a], %[a11]\n\t"
#define ACC12_OPERANDS_X [a0] "+x"(a0), [a1] "+x"(a1), [a2] "+x"(a2), [a3] "+x"(a3), [a4] "+x"(a4), [a5] "+x"(a5), [a6] "+x"(a6), [a7] "+x"(a7), [a8] "+x"(a8), [a9] "+x"(a9), [a10] "+x"(a10), [a11] "+x"(a11)
#define ACC12_OPERANDS [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4), [a5] "+v"(a5), [a6] "+v"(a6), [a7] "+v"(a7), [a8] "+v"(a8), [a9] "+v"(a9), [a10] "+v"(a10), [a11] "+v"(a11)

/// vpdpbusd zmm: 64 u8 x s8 multiply-adds per instruction.
__attribute__((target("avx512f,avx512vnni"))) std::int32_t vnni_loop(std::int64_t iterations) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
            a10 = a0, a11 = a0;
    const __m512i u = _mm512_set1_epi8(3);
    const __m512i s = _mm512_set1_epi8(-2);
    for (std::int64_t i = 0; i < iterations; ++i)
        __asm__ volatile(NPFT_ACC12("vpdpbusd") : ACC12_OPERANDS : [a] "v"(u), [b] "v"(s));
    const __m512i total = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                                           _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
    const __m512i rest = _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11));
    alignas(64) std::int32_t lanes[16];
    _mm512_store_si512(lanes, _mm512_add_epi32(total, rest));
    return lanes[0];
}

/// AVX2 has no int8 dot product into int32: vpmaddubsw (u8 x s8 pairs into int16, 32 multiply-adds) is the kernels'
/// int8 instruction there (followed by vpmaddwd and vpaddd once per two of them).
__attribute__((target("avx2"))) std::int32_t maddubs_loop(std::int64_t iterations) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
            a10 = a0, a11 = a0;
    const __m256i u = _mm256_set1_epi8(3);
    const __m256i s = _mm256_set1_epi8(-2);
    for (std::int64_t i = 0; i < iterations; ++i)
        __asm__ volatile(NPFT_ACC12("vpmaddubsw") : ACC12_OPERANDS : [a] "x"(s), [b] "x"(u));
    alignas(32) std::int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi32(_mm256_add_epi32(a0, a7), _mm256_add_epi32(a9, a11)));
    return lanes[0];
}

/// vpdpbusd ymm with the VEX encoding (AVX-VNNI): 32 u8 x s8 multiply-adds per instruction.
__attribute__((target("avx2,avxvnni"))) std::int32_t avx_vnni_loop(std::int64_t iterations) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
            a10 = a0, a11 = a0;
    const __m256i u = _mm256_set1_epi8(3);
    const __m256i s = _mm256_set1_epi8(-2);
    for (std::int64_t i = 0; i < iterations; ++i)
        __asm__ volatile(NPFT_ACC12("%{vex%} vpdpbusd") : ACC12_OPERANDS_X : [a] "x"(u), [b] "x"(s));
    const __m256i total = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                                           _mm256_add_epi32(_mm256_add_epi32(a4, a5), _mm256_add_epi32(a6, a7)));
    const __m256i rest = _mm256_add_epi32(_mm256_add_epi32(a8, a9), _mm256_add_epi32(a10, a11));
    alignas(32) std::int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi32(total, rest));
    return lanes[0];
}

/// vfmadd231ps zmm: 16 fp32 multiply-adds per instruction.
__attribute__((target("avx512f"))) float fma512_loop(std::int64_t iterations) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
           a10 = a0, a11 = a0;
    const __m512 x = _mm512_set1_ps(1e-3f);
    const __m512 y = _mm512_set1_ps(1e-3f);
    for (std::int64_t i = 0; i < iterations; ++i)
        __asm__ volatile(NPFT_ACC12("vfmadd231ps") : ACC12_OPERANDS : [a] "v"(x), [b] "v"(y));
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, _mm512_add_ps(_mm512_add_ps(a0, a5), _mm512_add_ps(a10, a11)));
    return lanes[0];
}
#undef NPFT_ACC12
#undef ACC12_OPERANDS
#undef ACC12_OPERANDS_X
#endif

/// CPU time of this thread: on a shared machine, what the loop got of the core.
double thread_seconds() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

/// Runs loop(iterations) per benchmark iteration; macs_per_iteration multiply-adds each time.
template <class Loop>
void peak_benchmark(benchmark::State& state, Loop loop, double macs_per_iteration, double* peak) {
    constexpr std::int64_t iterations = 1 << 20;
    const double start = thread_seconds();
    for (auto _ : state) benchmark::DoNotOptimize(loop(iterations));
    const double seconds = thread_seconds() - start;
    const double macs = macs_per_iteration * static_cast<double>(iterations) * static_cast<double>(state.iterations());
    state.counters["MACs/s"] = benchmark::Counter(macs, benchmark::Counter::kIsRate);
    if (peak != nullptr) *peak = macs / seconds;
}

struct FormatSpec {
    const char* name;
    Format format;
    int bits;  ///< 0: dense fp32 Eigen; -1: dense fp32 OpenBLAS
    Index group;
    int gemm_256 = 0;  ///< 0: multiply() (its best path); 1: the 256-bit GEMM with AVX-VNNI; 2: with AVX2 vpmaddubsw
};

const FormatSpec formats[] = {
    {"fp32_eigen_native", Format::uniform_symmetric, 0, 0},
#if NPFT_BENCH_OPENBLAS
    {"fp32_openblas", Format::uniform_symmetric, -1, 0},
#endif
    {"u4g128_int8", Format::uniform_asymmetric, 4, 128},
    {"u3g128_int8", Format::uniform_asymmetric, 3, 128},
    {"u2g128_int8", Format::uniform_asymmetric, 2, 128},
    {"u4_int8", Format::uniform_symmetric, 4, 0},
    {"u8g128_int8", Format::uniform_asymmetric, 8, 128},
    {"u8_int8", Format::uniform_symmetric, 8, 0},
    {"lut4_int8", Format::lut, 4, 0},
    {"lut3_int8", Format::lut, 3, 0},
    {"u4g128_int8_avxvnni", Format::uniform_asymmetric, 4, 128, 1},
    {"u4g128_int8_avx2", Format::uniform_asymmetric, 4, 128, 2},
    {"u8g128_int8_avx2", Format::uniform_asymmetric, 8, 128, 2},  // nibble planes: two vpmaddubsw per quad
    {"lut4_int8_avx2", Format::lut, 4, 0, 2},                     // two table planes, 2 quads per int16 sum
};

void prefill_benchmark(benchmark::State& state, const FormatSpec& f, Index rows, Index cols, Index batch, int threads) {
    const Matrix x = npft_test::gaussian_matrix(batch, cols, 2, 4);
    Matrix y(batch, rows);
    if (f.bits == 0) {
        const Matrix w = npft_test::gaussian_matrix(rows, cols, 3, 5);
        for (auto _ : state) {
            cpu::parallel_rows(rows, threads, 64, [&](Index begin, Index end) {
                y.middleCols(begin, end - begin).noalias() = x * w.middleRows(begin, end - begin).transpose();
            });
            benchmark::DoNotOptimize(y.data());
        }
        state.SetLabel("eigen -march=native");
    } else if (f.bits < 0) {
#if NPFT_BENCH_OPENBLAS
        // y = x W^T with x (M x K) and W (N x K) row-major: the same product as the Eigen row.
        const Matrix w = npft_test::gaussian_matrix(rows, cols, 3, 5);
        openblas_set_num_threads(threads);
        for (auto _ : state) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(batch), static_cast<int>(rows), static_cast<int>(cols),
                        1.0f, x.data(), static_cast<int>(cols), w.data(), static_cast<int>(cols), 0.0f, y.data(), static_cast<int>(rows));
            benchmark::DoNotOptimize(y.data());
        }
        state.SetLabel("openblas sgemm");
#endif
    } else if (f.gemm_256 != 0) {
#if NPFT_CPU_X86
        const QuantizedMatrix w = npft_test::random_quantized(f.format, f.bits, rows, cols, f.group, 1);
        const cpu::Int8Dot256 dot = f.gemm_256 == 1 ? cpu::Int8Dot256::avx_vnni : cpu::Int8Dot256::avx2_maddubs;
        for (auto _ : state) benchmark::DoNotOptimize(npft_test::run_int8_gemm_256(w, x, dot, threads).data());
        state.SetLabel(f.gemm_256 == 1 ? "int8 gemm (avx-vnni 256)" : "int8 gemm (avx2 maddubs)");
#endif
    } else {
        const QuantizedMatrix w = npft_test::random_quantized(f.format, f.bits, rows, cols, f.group, 1);
        const cpu::MultiplyOptions options{threads, cpu::Path::best, cpu::Activations::int8};
        for (auto _ : state) {
            cpu::multiply(w, MatrixView<const float>(npft::as_matrix_view(x)), MatrixView<float>(npft::as_matrix_view(y)), options);
            benchmark::DoNotOptimize(y.data());
        }
        const cpu::Int8Gemm gemm = batch >= cpu::int8_gemm_min_batch ? cpu::int8_gemm_for(w, cpu::resolve_path(cpu::Path::best))
                                                                     : cpu::Int8Gemm::none;
        state.SetLabel(gemm == cpu::Int8Gemm::avx512_vnni ? "int8 gemm (avx-512 vnni)"
                       : gemm == cpu::Int8Gemm::avx_vnni  ? "int8 gemm (avx-vnni 256)"
                       : gemm == cpu::Int8Gemm::avx2_maddubs ? "int8 gemm (avx2 maddubs)"
                       : cpu::int8_kernel_applies(w)         ? "int8 kernel"
                                                             : "fp32 kernel");  // 8-bit below int8_gemm_min_batch
    }
    const double macs = static_cast<double>(batch) * static_cast<double>(rows) * static_cast<double>(cols);
    state.counters["MACs/s"] = benchmark::Counter(macs * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["us/token"] = benchmark::Counter(static_cast<double>(state.iterations()) * static_cast<double>(batch),
                                                    benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    const double peak = f.gemm_256 == 1 ? avx_vnni_peak : f.gemm_256 == 2 ? avx2_maddubs_peak : int8_peak;
    if (peak > 0.0) {
        // A rate counter: divided by the measured real time, this is (MACs/s) / (peak x threads).
        state.counters["of_int8_peak"] = benchmark::Counter(macs * static_cast<double>(state.iterations()) / (peak * threads),
                                                            benchmark::Counter::kIsRate);
    }
}

}  // namespace

int main(int argc, char** argv) {
#if NPFT_CPU_X86
    const auto& features = cpu::cpu_features();
    if (features.avx512f && features.avx512vnni) {
        benchmark::RegisterBenchmark("peak/int8/avx512_vnni", [](benchmark::State& s) { peak_benchmark(s, vnni_loop, 12.0 * 64.0, &int8_peak); });
    }
    if (features.avx_vnni) {
        benchmark::RegisterBenchmark("peak/int8/avx_vnni_256", [](benchmark::State& s) {
            peak_benchmark(s, avx_vnni_loop, 12.0 * 32.0, &avx_vnni_peak);
            if (int8_peak == 0.0) int8_peak = avx_vnni_peak;  // no AVX-512 VNNI: the widest int8 instruction
        });
    }
    if (features.has_avx2_path()) {
        benchmark::RegisterBenchmark("peak/int8/avx2_maddubs", [](benchmark::State& s) {
            peak_benchmark(s, maddubs_loop, 12.0 * 32.0, &avx2_maddubs_peak);
            if (int8_peak == 0.0) int8_peak = avx2_maddubs_peak;  // no wider int8 instruction on this CPU
        });
    }
    if (features.avx512f)
        benchmark::RegisterBenchmark("peak/fp32_fma/avx512", [](benchmark::State& s) { peak_benchmark(s, fma512_loop, 12.0 * 16.0, nullptr); });
#endif
    const std::pair<npft::Index, npft::Index> shapes[] = {{4096, 4096}, {4096, 14336}};
    for (const auto& [rows, cols] : shapes)
        for (const FormatSpec& f : formats)
            for (const npft::Index batch : {1, 2, 4, 8, 16, 64, 256, 512})
                for (const int threads : {1, 2}) {
#if NPFT_CPU_X86
                    if (f.gemm_256 != 0 && (batch < cpu::int8_gemm_min_batch || (f.gemm_256 == 1 ? !features.avx_vnni : !features.has_avx2_path())))
                        continue;
#else
                    if (f.gemm_256 != 0) continue;
#endif
                    const std::string name = std::string("prefill/") + f.name + "/" + std::to_string(rows) + "x" + std::to_string(cols) +
                                             "/batch:" + std::to_string(batch) + "/threads:" + std::to_string(threads);
                    auto* b = benchmark::RegisterBenchmark(name.c_str(), [&f, rows = rows, cols = cols, batch, threads](benchmark::State& s) {
                        prefill_benchmark(s, f, rows, cols, batch, threads);
                    });
                    b->Unit(benchmark::kMillisecond);
                    if (threads > 1) b->UseRealTime();
                }
#if !NPFT_BENCH_OPENBLAS
    std::fprintf(stderr, "bench_prefill: built without OpenBLAS (Debian: libopenblas-dev), no fp32_openblas rows\n");
#endif
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
