// Training throughput of the tiny LLaMA (examples/common/tiny_llama) against Eigen's GEMM rate at the same shapes.
//   BM_TrainStep/<shape>/<threads>     one loss_and_gradient (forward + backward) of a batch; items = tokens
//   BM_StepGemms/<shape>/<mode>        the step's linear-layer GEMMs alone (x W^T, dY W, dY^T X of every linear and
//                                      the head), on random matrices of the same shapes:
//                                        mode 0: one plain Eigen product per GEMM, one thread
//                                        mode 1: the training code's fixed tiles (parallel.hpp), one thread
//                                        mode 2: the same tiles on 2 threads
// shape 0 is the demo model (Config::small(), 16 x 128 tokens), shape 1 the larger one (Config::large(), same batch).
// Counter FLOP/s: the step's multiply-adds x 2 over wall time; for BM_TrainStep it counts the GEMMs and attention's
// products (full length x length score matrices, as computed), so FLOP/s of BM_TrainStep over BM_StepGemms mode 0 is
// the training rate as a fraction of Eigen's GEMM rate. scripts/bench.sh does not run this one; docs/benchmarks.md has
// the figures and the command.
#include <benchmark/benchmark.h>

#include <vector>

#include "test_matrices.hpp"
#include "tiny_llama/model.hpp"
#include "tiny_llama/parallel.hpp"

namespace {

using npft::Index;
using tiny_llama::Config;

struct Shape {
    Config config;
    Index sequences = 16;
    Index length() const { return config.context; }
    Index tokens() const { return sequences * length(); }
};

Shape shape(Index which) { return {which == 0 ? Config::small() : Config::large(), 16}; }

/// (out, in) of every linear product of one step: 7 per block, then the head.
std::vector<std::pair<Index, Index>> linear_shapes(const Config& c) {
    std::vector<std::pair<Index, Index>> out;
    for (Index l = 0; l < c.layers; ++l) {
        out.insert(out.end(), {{c.dim, c.dim}, {c.kv_dim(), c.dim}, {c.kv_dim(), c.dim}, {c.dim, c.dim},
                               {c.hidden, c.dim}, {c.hidden, c.dim}, {c.dim, c.hidden}});
    }
    out.emplace_back(c.vocab, c.dim);
    return out;
}

double gemm_flops(const Shape& s) {
    double multiply_adds = 0.0;
    for (const auto& [out, in] : linear_shapes(s.config)) multiply_adds += 3.0 * static_cast<double>(out * in);
    return 2.0 * multiply_adds * static_cast<double>(s.tokens());
}

double attention_flops(const Shape& s) {
    const Config& c = s.config;
    // Forward q k^T and P v, backward dv, dP, dq, dk: 6 products of length x length x head_dim per (sequence, head).
    const double per_head = 6.0 * 2.0 * static_cast<double>(s.length() * s.length() * c.head_dim());
    return per_head * static_cast<double>(c.heads * s.sequences * c.layers);
}

tiny_llama::Batch random_batch(const Shape& s) {
    tiny_llama::Batch b;
    const npft::RandomKey key{3, 4};
    for (Index q = 0; q < s.sequences; ++q) {
        std::vector<tiny_llama::Token> seq;
        for (Index t = 0; t <= s.length(); ++t)
            seq.push_back(static_cast<tiny_llama::Token>(
                npft::uniform01(key, static_cast<std::uint64_t>(q * (s.length() + 1) + t)) * 255.0f));
        b.sequences.push_back(seq);
    }
    return b;
}

void BM_TrainStep(benchmark::State& state) {
    const Shape s = shape(state.range(0));
    tiny_llama::Model model(s.config, 1);
    model.set_threads(static_cast<int>(state.range(1)));
    const tiny_llama::Batch batch = random_batch(s);
    for (auto _ : state) benchmark::DoNotOptimize(model.loss_and_gradient(batch));
    state.SetItemsProcessed(state.iterations() * s.tokens());
    state.counters["FLOP/s"] = benchmark::Counter(gemm_flops(s) + attention_flops(s), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["attention_share_of_flops"] = attention_flops(s) / (gemm_flops(s) + attention_flops(s));
}

void BM_StepGemms(benchmark::State& state) {
    const Shape s = shape(state.range(0));
    const Index mode = state.range(1);
    struct Linear {
        npft::Matrix w, x, y, dy, dx, dw;
    };
    std::vector<Linear> linears;
    std::uint64_t stream = 0;
    for (const auto& [out, in] : linear_shapes(s.config)) {
        Linear l;
        l.w = npft_test::gaussian_matrix(out, in, 1, stream++);
        l.x = npft_test::gaussian_matrix(s.tokens(), in, 1, stream++);
        l.dy = npft_test::gaussian_matrix(s.tokens(), out, 1, stream++);
        linears.push_back(std::move(l));
    }
    for (auto _ : state) {
        for (Linear& l : linears) {
            if (mode == 0) {
                l.y.noalias() = l.x * l.w.transpose();
                l.dx.noalias() = l.dy * l.w;
                l.dw.noalias() = l.dy.transpose() * l.x;
            } else {
                const int threads = mode == 1 ? 1 : 2;
                tiny_llama::parallel::x_wt(l.x, l.w, l.y, threads);
                tiny_llama::parallel::dy_w(l.dy, l.w, l.dx, false, threads);
                tiny_llama::parallel::dyt_x(l.dy, l.x, l.dw, threads);
            }
            benchmark::DoNotOptimize(l.dw.data());
        }
    }
    state.SetItemsProcessed(state.iterations() * s.tokens());
    state.counters["FLOP/s"] = benchmark::Counter(gemm_flops(s), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_TrainStep)->ArgsProduct({{0, 1}, {1, 2}})->ArgNames({"shape", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_StepGemms)->ArgsProduct({{0, 1}, {0, 1, 2}})->ArgNames({"shape", "mode"})->UseRealTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
