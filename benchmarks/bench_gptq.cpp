// GPTQ cost for one linear layer, beside an Eigen float GEMM of the same flop count.
//   ./bench_gptq --benchmark_format=json                      # quick set (default filter "quick/")
//   ./bench_gptq --benchmark_filter=full/ --benchmark_format=json   # the 4096 x 4096 layer, all 128 x 2048 tokens
// Hessian accumulation (H += X^T X per batch of 2048 tokens, the calibration set streamed) and quantization (dampening,
// factorization, column loop) are reported separately. Each timed entry carries `flops` and `ratio_to_gemm`: its time
// over the time Eigen's plain float GEMM needs for the same number of flops (measured in the same process, best of 3).
// Eigen runs single-threaded here (no OpenMP), for GPTQ and the GEMM alike. All times are the CPU time of that one
// thread (the reported cpu_time; real_time is inflated when the machine is shared).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <ctime>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/quant/gptq.hpp>
#include <npft/quant/nonuniform.hpp>
#include <npft/quant/uniform.hpp>

#include "test_matrices.hpp"

namespace {

using npft::Index;
using npft::Matrix;
namespace q = npft::quant;

constexpr Index batch_tokens = 2048;  // one calibration sequence
constexpr Index sequences = 128;

Matrix gaussian_matrix(Index rows, Index cols, std::uint64_t stream) { return npft_test::gaussian_matrix(rows, cols, 1, stream); }

/// One batch of calibration inputs with correlated features (a few shared factors plus noise), cached per width.
const Matrix& calibration_batch(Index features) {
    static std::map<Index, Matrix> cache;
    auto [at, fresh] = cache.try_emplace(features);
    if (fresh) at->second = gaussian_matrix(batch_tokens, 8, 2) * gaussian_matrix(8, features, 3) + gaussian_matrix(batch_tokens, features, 4);
    return at->second;
}

const Eigen::MatrixXd& layer_hessian(Index features) {
    static std::map<Index, Eigen::MatrixXd> cache;
    auto [at, fresh] = cache.try_emplace(features);
    if (fresh) {
        q::GptqHessian h(features);
        h.add(calibration_batch(features));
        at->second = h.matrix();
    }
    return at->second;
}

double thread_seconds() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

/// Seconds Eigen needs for a float GEMM of `flops` floating-point operations: one (m x k) * (k x n) product with n
/// chosen for the flops but capped at 4096 (memory), timed and scaled linearly to `flops`.
double gemm_seconds(double flops, Index m, Index k) {
    const Index n = std::clamp<Index>(static_cast<Index>(flops / (2.0 * static_cast<double>(m) * static_cast<double>(k)) + 0.5), 1, 4096);
    const Eigen::MatrixXf a = Eigen::MatrixXf::Random(m, k), b = Eigen::MatrixXf::Random(k, n);
    Eigen::MatrixXf c(m, n);
    double best = 1e300;
    for (int rep = 0; rep < 3; ++rep) {
        const double start = thread_seconds();
        c.noalias() = a * b;
        benchmark::DoNotOptimize(c.data());
        best = std::min(best, thread_seconds() - start);
    }
    return best * flops / (2.0 * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n));
}

void report(benchmark::State& state, double flops, double seconds_per_iteration, Index gemm_m, Index gemm_k) {
    state.counters["flops"] = flops;
    state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["ratio_to_gemm"] = seconds_per_iteration / gemm_seconds(flops, gemm_m, gemm_k);
}

/// H += X^T X for `batches` batches of 2048 tokens (the same batch reused: the cost does not depend on the values).
void BM_Hessian(benchmark::State& state) {
    const Index features = state.range(0), batches = state.range(1);
    const Matrix& x = calibration_batch(features);
    double total = 0.0;
    for (auto _ : state) {
        const double start = thread_seconds();
        q::GptqHessian h(features);
        for (Index b = 0; b < batches; ++b) h.add(x);
        benchmark::DoNotOptimize(h.tokens());
        total += thread_seconds() - start;
    }
    // A symmetric rank-k update: tokens * features * (features + 1) flops.
    const double flops = static_cast<double>(batches * batch_tokens) * static_cast<double>(features) * static_cast<double>(features + 1);
    report(state, flops, total / static_cast<double>(state.iterations()), features, batch_tokens);
    state.counters["tokens"] = static_cast<double>(batches * batch_tokens);
    state.counters["seconds_for_128x2048_tokens"] = total / static_cast<double>(state.iterations()) * static_cast<double>(sequences) /
                                                    static_cast<double>(batches);
    state.SetBytesProcessed(state.iterations() * batches * x.size() * static_cast<std::int64_t>(sizeof(float)));
}

/// GPTQ of a square layer (rows = cols = size) from its Hessian.
template <class Grid>
void BM_Quantize(benchmark::State& state) {
    const Index size = state.range(0);
    const bool act_order = state.range(1) != 0;
    const Matrix w = 0.02f * gaussian_matrix(size, size, 5);
    const Eigen::MatrixXd& h = layer_hessian(size);
    const q::Gptq<Grid> gptq{Grid{}, {.act_order = act_order}};
    double total = 0.0;
    for (auto _ : state) {
        const double start = thread_seconds();
        q::QuantizedMatrix packed = gptq.quantize(w, h);
        benchmark::DoNotOptimize(packed.codes().words().data());
        total += thread_seconds() - start;
    }
    // rows * cols^2 for the error feedback (every column updates all later ones), cols^3 / 3 each for the Cholesky
    // factorization and the triangular inverse (in double).
    const double n = static_cast<double>(size);
    const double flops = n * n * n + 2.0 * n * n * n / 3.0;
    report(state, flops, total / static_cast<double>(state.iterations()), size, size);
    state.SetBytesProcessed(state.iterations() * w.size() * static_cast<std::int64_t>(sizeof(float)));
}

void quick_sizes(benchmark::internal::Benchmark* b) {
    b->ArgNames({"size", "act_order"})->Args({1024, 0})->Args({2048, 0})->Args({2048, 1});
    b->Unit(benchmark::kSecond)->Iterations(1);
}

}  // namespace

// Quick: one batch per width (multiply by 128 for the whole calibration set: `seconds_for_128x2048_tokens`).
BENCHMARK(BM_Hessian)->Name("quick/hessian")->ArgNames({"in", "batches"})->Args({1024, 1})->Args({2048, 1})->Args({4096, 1})
    ->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK_TEMPLATE(BM_Quantize, q::Uniform<4, 128>)->Name("quick/gptq/uniform4_g128")->Apply(quick_sizes);
BENCHMARK_TEMPLATE(BM_Quantize, q::NonUniform<4>)->Name("quick/gptq/kmeans4")->ArgNames({"size", "act_order"})->Args({1024, 0})
    ->Unit(benchmark::kSecond)->Iterations(1);

// Full: the 4096 x 4096 layer with 128 x 2048 calibration tokens.
BENCHMARK(BM_Hessian)->Name("full/hessian")->ArgNames({"in", "batches"})->Args({4096, sequences})
    ->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK_TEMPLATE(BM_Quantize, q::Uniform<4, 128>)->Name("full/gptq/uniform4_g128")->ArgNames({"size", "act_order"})
    ->Args({4096, 0})->Args({4096, 1})->Unit(benchmark::kSecond)->Iterations(1);

// The default filter runs the quick set only; any --benchmark_filter on the command line wins.
int main(int argc, char** argv) {
    std::vector<char*> args(argv, argv + argc);
    static char quick[] = "--benchmark_filter=quick/";
    const bool filtered = std::any_of(args.begin(), args.end(), [](const char* a) { return std::strncmp(a, "--benchmark_filter", 18) == 0; });
    if (!filtered) args.insert(args.begin() + 1, quick);
    int count = static_cast<int>(args.size());
    benchmark::Initialize(&count, args.data());
    if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
