// bench_cuda: the quantized kernels against cuBLAS fp16 on Llama-7B/13B linear-layer shapes, batch 1..128.
// Reports time per GEMM (CUDA events, manual time; npft's gemm with a split-K workspace), bytes moved (weights +
// activations + outputs, so that bytes_per_second is the bandwidth reached), speedup_vs_cublas and k_splits. Each
// benchmark rotates over enough copies of its weights to fill kRotationBytes (several times any current GPU's L2: an
// H200 has 60 MB, which holds a whole 4-bit Llama-7B layer), so that every product reads its weights from DRAM as in
// a real model's forward pass.
// Without a device: prints SKIPPED and exits 77.
//   bench_cuda --benchmark_format=json --benchmark_out=cuda.json
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>
#include <string>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/cuda.cuh>

namespace {

using npft::Index;
using npft::quant::Format;
namespace nc = npft::cuda;

struct LayerShape {
    const char* name;
    Index n, k;  // output channels, inputs
};

const LayerShape shapes[] = {
    {"llama7b_qkv", 4096, 4096},  {"llama7b_up", 11008, 4096},  {"llama7b_down", 4096, 11008},
    {"llama13b_qkv", 5120, 5120}, {"llama13b_up", 13824, 5120}, {"llama13b_down", 5120, 13824},
};

struct FormatSpec {
    const char* name;
    Format format;
    int bits;
    Index group;  // 0: per channel
};

const FormatSpec formats[] = {
    {"int4_g128", Format::uniform_asymmetric, 4, 128},
    {"int3_g128", Format::uniform_asymmetric, 3, 128},
    {"int2_g64", Format::uniform_asymmetric, 2, 64},
    {"int4_sym_channel", Format::uniform_symmetric, 4, 0},
    {"lut4", Format::lut, 4, 0},
    {"lut3", Format::lut, 3, 0},
};

const Index batches[] = {1, 2, 4, 8, 16, 32, 64, 128};

constexpr std::size_t kRotationBytes = std::size_t{512} << 20;

/// How many copies of `bytes` of weights make at least kRotationBytes (at least 2).
std::size_t rotation_copies(std::size_t bytes) { return std::max<std::size_t>(2, (kRotationBytes + bytes - 1) / bytes); }

/// Random tiled weights built directly (any bit pattern is a valid code), with small fp16 metadata.
nc::TiledWeights random_tiled(const FormatSpec& f, Index n, Index k) {
    nc::TiledWeights t;
    t.format = f.format;
    t.shape.rows = n;
    t.shape.cols = k;
    t.shape.padded_rows = nc::round_up(n, nc::row_alignment);
    t.shape.blocks = (k + 31) / 32;
    t.shape.group_size = f.group == 0 || f.format == Format::lut ? k : f.group;
    t.shape.groups = k / t.shape.group_size;
    t.shape.bits = f.bits;
    t.codes.resize(static_cast<std::size_t>(t.shape.blocks * f.bits * t.shape.padded_rows));
    for (std::size_t i = 0; i < t.codes.size(); ++i) t.codes[i] = npft::random_words({1, 1}, i)[0];
    const std::size_t metadata = static_cast<std::size_t>(t.shape.groups * t.shape.padded_rows);
    if (f.format == Format::lut) {
        t.lut.resize(static_cast<std::size_t>(t.shape.padded_rows << f.bits));
        for (std::size_t i = 0; i < t.lut.size(); ++i) t.lut[i] = npft::half(npft::uniform({1, 2}, i, -0.1f, 0.1f));
    } else {
        t.scales.assign(metadata, npft::half(0.01f));
        if (f.format == Format::uniform_asymmetric) t.zeros.assign(metadata, npft::half(static_cast<float>(1 << (f.bits - 1))));
    }
    return t;
}

/// Times `launch` with CUDA events: a few warm-up runs, then one event pair per iteration. Returns the mean ms.
template <class Launch>
double time_loop(benchmark::State& state, nc::Stream& stream, Launch launch) {
    for (int i = 0; i < 3; ++i) launch();
    stream.synchronize();
    nc::Event start, stop;
    double total_ms = 0.0;
    for (auto _ : state) {
        start.record(stream.get());
        launch();
        stop.record(stream.get());
        stop.synchronize();
        const float ms = stop.elapsed_ms_since(start);
        total_ms += ms;
        state.SetIterationTime(static_cast<double>(ms) / 1e3);
    }
    return state.iterations() > 0 ? total_ms / static_cast<double>(state.iterations()) : 0.0;
}

/// Median cuBLAS fp16 time (ms) of a shape, measured once and cached for the speedup counter.
double cublas_ms(const LayerShape& s, Index batch) {
    static std::map<std::tuple<Index, Index, Index>, double> cache;
    const auto key = std::make_tuple(s.n, s.k, batch);
    if (const auto it = cache.find(key); it != cache.end()) return it->second;
    nc::CublasHandle handle;
    nc::Stream stream;
    handle.set_stream(stream.get());
    const std::size_t weight_elements = static_cast<std::size_t>(s.n * s.k);
    const std::size_t copies = rotation_copies(weight_elements * sizeof(npft::half));
    nc::DeviceBuffer<npft::half> w(weight_elements * copies), x(static_cast<std::size_t>(batch * s.k)),
        y(static_cast<std::size_t>(batch * s.n));
    nc::check(cudaMemset(w.data(), 0, w.bytes()), "cudaMemset");
    nc::check(cudaMemset(x.data(), 0, x.bytes()), "cudaMemset");
    const auto weights = [&](int i) { return w.data() + (static_cast<std::size_t>(i) % copies) * weight_elements; };
    for (int i = 0; i < 3; ++i) nc::cublas_gemm_fp16(handle, x.data(), weights(i), y.data(), batch, s.n, s.k);
    std::vector<float> times;
    nc::Event start, stop;
    for (int i = 0; i < 21; ++i) {
        start.record(stream.get());
        nc::cublas_gemm_fp16(handle, x.data(), weights(i + 3), y.data(), batch, s.n, s.k);
        stop.record(stream.get());
        stop.synchronize();
        times.push_back(stop.elapsed_ms_since(start));
    }
    std::nth_element(times.begin(), times.begin() + 10, times.end());
    return cache[key] = times[10];
}

void bench_cublas(benchmark::State& state, LayerShape s, Index batch) {
    nc::CublasHandle handle;
    nc::Stream stream;
    handle.set_stream(stream.get());
    const std::size_t weight_elements = static_cast<std::size_t>(s.n * s.k);
    const std::size_t copies = rotation_copies(weight_elements * sizeof(npft::half));
    nc::DeviceBuffer<npft::half> w(weight_elements * copies), x(static_cast<std::size_t>(batch * s.k)),
        y(static_cast<std::size_t>(batch * s.n));
    nc::check(cudaMemset(w.data(), 0, w.bytes()), "cudaMemset");
    nc::check(cudaMemset(x.data(), 0, x.bytes()), "cudaMemset");
    std::size_t next = 0;
    time_loop(state, stream, [&] {
        nc::cublas_gemm_fp16(handle, x.data(), w.data() + (next++ % copies) * weight_elements, y.data(), batch, s.n, s.k);
    });
    state.SetBytesProcessed(state.iterations() *
                            static_cast<std::int64_t>(w.bytes() / copies + x.bytes() + y.bytes()));
    state.counters["speedup_vs_cublas"] = 1.0;
}

void bench_quantized(benchmark::State& state, FormatSpec f, LayerShape s, Index batch) {
    const nc::TiledWeights host = random_tiled(f, s.n, s.k);
    std::vector<nc::DeviceQuantizedMatrix> copies;
    copies.emplace_back(host);
    const std::size_t count = rotation_copies(copies.front().bytes());
    while (copies.size() < count) copies.emplace_back(host);
    nc::Stream stream;
    nc::DeviceBuffer<npft::half> x(static_cast<std::size_t>(batch * s.k)), y(static_cast<std::size_t>(batch * s.n));
    nc::check(cudaMemset(x.data(), 0, x.bytes()), "cudaMemset");
    std::vector<nc::GemmArguments<npft::half>> args;
    for (const auto& weights : copies) args.push_back({&weights, x.data(), batch, 0, y.data(), 0, nullptr});
    if (const nc::Support support = nc::can_implement(args.front()); !support) {
        state.SkipWithError(support.reason.c_str());
        return;
    }
    // The split-K path (gemm with a workspace), as a model would call it; k_splits reports the split it chose.
    nc::DeviceBuffer<float> workspace(nc::gemm_workspace_size(args.front()));
    state.counters["k_splits"] = static_cast<double>(nc::gemm_split(args.front()).splits);
    std::size_t next = 0;
    const double ms = time_loop(state, stream, [&] { nc::gemm(args[next++ % args.size()], workspace, stream.get()); });
    state.SetBytesProcessed(state.iterations() *
                            static_cast<std::int64_t>(copies.front().bytes() + x.bytes() + y.bytes()));
    if (ms > 0.0) state.counters["speedup_vs_cublas"] = cublas_ms(s, batch) / ms;
}

/// GEMV tile sweep (a tuning record): int4 g128 at batch 1 without split-K, launched directly with Tile, to separate
/// the effect of the unroll from that of the split.
template <class Tile>
void bench_gemv_tile(benchmark::State& state, LayerShape s) {
    const FormatSpec& f = formats[0];
    const nc::TiledWeights host = random_tiled(f, s.n, s.k);
    std::vector<nc::DeviceQuantizedMatrix> copies;
    copies.emplace_back(host);
    const std::size_t count = rotation_copies(copies.front().bytes());
    while (copies.size() < count) copies.emplace_back(host);
    nc::Stream stream;
    nc::DeviceBuffer<npft::half> x(static_cast<std::size_t>(s.k)), y(static_cast<std::size_t>(s.n));
    nc::check(cudaMemset(x.data(), 0, x.bytes()), "cudaMemset");
    std::vector<nc::KernelProblem<npft::half>> problems;
    for (const auto& weights : copies) problems.push_back({weights.view(), x.data(), y.data(), nullptr, 1, s.k, s.n});
    std::size_t next = 0;
    const dim3 grid = nc::gemv_grid<Tile>(host.shape);
    const double ms = time_loop(state, stream, [&] {
        nc::gemv_kernel<4, false, 1, npft::half, Tile><<<grid, Tile::threads, 0, stream.get()>>>(problems[next++ % problems.size()]);
    });
    nc::check(cudaGetLastError(), "gemv_kernel launch");
    state.SetBytesProcessed(state.iterations() *
                            static_cast<std::int64_t>(copies.front().bytes() + x.bytes() + y.bytes()));
    if (ms > 0.0) state.counters["speedup_vs_cublas"] = cublas_ms(s, 1) / ms;
}

}  // namespace

int main(int argc, char** argv) {
    if (const std::string reason = nc::kernels_unsupported_reason(); !reason.empty()) {
        std::printf("SKIPPED: %s\n", reason.c_str());
        return 77;
    }
    for (const LayerShape& s : shapes)
        for (const npft::Index batch : batches) {
            const std::string suffix = std::string(s.name) + "_" + std::to_string(s.n) + "x" + std::to_string(s.k) +
                                       "/batch:" + std::to_string(batch);
            benchmark::RegisterBenchmark(("cublas_fp16/" + suffix).c_str(), bench_cublas, s, batch)
                ->UseManualTime()
                ->Unit(benchmark::kMicrosecond);
            for (const FormatSpec& f : formats)
                benchmark::RegisterBenchmark((std::string(f.name) + "/" + suffix).c_str(), bench_quantized, f, s, batch)
                    ->UseManualTime()
                    ->Unit(benchmark::kMicrosecond);
        }
    for (const LayerShape& s : shapes) {
        const std::string suffix = std::string(s.name) + "_" + std::to_string(s.n) + "x" + std::to_string(s.k) + "/batch:1";
        benchmark::RegisterBenchmark(("gemv_tile_sweep/int4_g128_w8_u1/" + suffix).c_str(), bench_gemv_tile<nc::GemvTile<8, 1>>, s)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark(("gemv_tile_sweep/int4_g128_w8_u2/" + suffix).c_str(), bench_gemv_tile<nc::GemvTile<8, 2>>, s)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark(("gemv_tile_sweep/int4_g128_w8_u4/" + suffix).c_str(), bench_gemv_tile<nc::GemvTile<8, 4>>, s)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
    }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
