// The cost NPFT adds to one training step, beside the cost of the step itself, for a small and a large layer.
// Arguments: {width, tokens}: a width x width linear layer on `tokens` tokens (256 x 256 on 256 tokens; 1024 x 1024 on
// 1024 tokens, the reference recipe's batch of 2 x 512).
//   BM_LayerForwardBackward : the user's own loss_and_gradient of that layer (MSE loss; Eigen fp32, one thread)
//   BM_NpftOverhead/...     : a whole NPFT stage of 64 steps around a stub model of the same shapes whose
//                             loss_and_gradient does nothing, so all the time is npft's: selection (amortized over the
//                             stage), noise draw + apply + restore on 0.05% outliers, PEFT bookkeeping, optimizer.
//     /noise_only           : PEFT reduced to one trainable weight: the noise mechanism alone
//     /lora_r16             : LoRA rank 16 in weight space (W0 + sBA written each step, dA and dB from G, AdamW)
//     /lora_r16_balanced    : the same with the Balanced loss (a clean and a noised call per step)
// Overhead ratio = (BM_NpftOverhead time / 64) / BM_LayerForwardBackward time. docs/pipeline.md reports the figures.
#include <benchmark/benchmark.h>

#include <npft/npft.hpp>

#include "test_matrices.hpp"

namespace {

constexpr npft::Index steps = 64;

npft::Matrix keyed(npft::Index rows, npft::Index cols, float scale, std::uint64_t stream) {
    return scale * npft_test::gaussian_matrix(rows, cols, 1, stream);
}

struct Batch {
    npft::Matrix x, y;  // width x tokens
};

// The representative layer: y_hat = W x, loss = 0.5/n ||y_hat - y||^2, with dW and dx (as inside a deep network).
struct LinearLayer {
    explicit LinearLayer(npft::Index width) : w(keyed(width, width, 0.03f, 1)), g(npft::Matrix::Zero(width, width)) {}
    npft::Matrix w, g, dx;
    std::vector<npft::train::Parameter> parameters() {
        return {{"layer.up", npft::as_matrix_view(w), npft::as_matrix_view(g)}};
    }
    double loss_and_gradient(const Batch& b) {
        const npft::Matrix r = w * b.x - b.y;
        const float inv_n = 1.0f / static_cast<float>(b.x.cols());
        g.noalias() = inv_n * r * b.x.transpose();
        dx.noalias() = w.transpose() * r;
        return 0.5 * static_cast<double>(r.squaredNorm()) * inv_n;
    }
};

// Same parameters, no work: whatever fit() costs around it is NPFT's overhead.
struct StubLayer {
    explicit StubLayer(npft::Index width) : w(keyed(width, width, 0.03f, 1)), g(keyed(width, width, 1e-3f, 2)) {}
    npft::Matrix w, g;
    std::vector<npft::train::Parameter> parameters() {
        return {{"layer.up", npft::as_matrix_view(w), npft::as_matrix_view(g)}};
    }
    double loss_and_gradient(const Batch&) { return 1.0; }
};

Batch make_batch(npft::Index width, npft::Index tokens) { return {keyed(width, tokens, 1.0f, 3), keyed(width, tokens, 1.0f, 4)}; }

void BM_LayerForwardBackward(benchmark::State& state) {
    const npft::Index width = state.range(0), tokens = state.range(1);
    LinearLayer layer(width);
    const Batch batch = make_batch(width, tokens);
    for (auto _ : state) benchmark::DoNotOptimize(layer.loss_and_gradient(batch));
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(sizeof(float) * (2 * width * width + 3 * width * tokens)));
    state.counters["flops"] = benchmark::Counter(6.0 * width * width * tokens, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_LayerForwardBackward)->Args({256, 256})->Args({1024, 1024})->Unit(benchmark::kMillisecond);

using Noise = npft::noise::Schedule<npft::noise::QuantStepUniform>;  // a fresh draw every step
template <class Loss = npft::train::Perturbed>
using Pipe = npft::Pipeline<npft::outliers::TopFisher, Noise, npft::train::NoTrace, npft::quant::Uniform<4, 128>,
                            npft::train::AdamW, Loss>;

template <class Loss = npft::train::Perturbed>
void run_stage(benchmark::State& state, npft::train::Peft peft, Loss loss = {}) {
    const npft::Index width = state.range(0), tokens = state.range(1);
    StubLayer model(width);
    const std::vector<Batch> batches{make_batch(width, tokens)};
    npft::train::PipelineOptions options;
    options.stages = 1;
    options.steps_per_stage = steps;
    options.learning_rate = 1e-4f;
    options.peft = std::move(peft);
    Pipe<Loss> pipe(options, {.selector = {.fraction = 0.0005}, .loss = loss});
    for (auto _ : state) benchmark::DoNotOptimize(pipe.fit(model, batches).last_loss);
    state.SetItemsProcessed(state.iterations() * steps);  // items = NPFT steps
    state.SetBytesProcessed(state.iterations() * steps * static_cast<std::int64_t>(sizeof(float) * width * width));
}

void BM_NpftOverhead_noise_only(benchmark::State& state) {
    const npft::Index width = state.range(0);
    run_stage(state, npft::train::MaskedWeights{{{"layer.up", npft::outliers::OutlierMask(width, width, {0})}}});
}
void BM_NpftOverhead_lora_r16(benchmark::State& state) { run_stage(state, npft::train::LoraOptions{.rank = 16, .alpha = 32.0f}); }
void BM_NpftOverhead_lora_r16_balanced(benchmark::State& state) {
    run_stage(state, npft::train::LoraOptions{.rank = 16, .alpha = 32.0f}, npft::train::Balanced{0.5f});
}
BENCHMARK(BM_NpftOverhead_noise_only)->Args({256, 256})->Args({1024, 1024})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_NpftOverhead_lora_r16)->Args({256, 256})->Args({1024, 1024})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_NpftOverhead_lora_r16_balanced)->Args({256, 256})->Args({1024, 1024})->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
