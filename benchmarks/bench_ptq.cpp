// Block-wise reconstruction (npft/ptq) on the tiny LLaMA demo shape (Config::small: 4 blocks, width 128, SwiGLU 384,
// 128-token sequences), per trainable-parameter policy, objective and thread count.
//   ./bench_ptq --benchmark_format=json
//   BM_Reconstruct/policy:P/objective:O/threads:T   one reconstruction of the whole model (real time = per model)
//     P: 0 scales (and zero points), 1 rounding (AdaRound), 2 LoRA (rank 4)
//     O: 0 single-block, 1 multi-block(2), 2 downstream(1) at the next block's output
//     T: threads of the blocks' forward and backward passes (the demo's tiles, same bits on any count)
// Calibration: 4 batches of 4 sequences (2048 tokens), 25 steps per window, RTN 3-bit per output channel, activations on
// disk (the default). Counters: seconds_per_block (the mean window time), seconds_per_step (per optimiser step of one
// window), peak_activation_MB.
//   BM_ReconstructReferenceShape/policy:P/objective:O   the block-wise study's cell (examples/08_ptq_study, its code and
//     default budget: 8 windows of 256 tokens, one per step, 24 steps per window, 2 threads) on the reference model's
//     shape (6 blocks, width 256, SwiGLU 768, context 256; seeded weights: the time depends on the shape only).
//     O: 0 single, 1 multi2, 2 multi4, 3 down1, 4 down2. Real time = per model; seconds_per_block counter.
#include <benchmark/benchmark.h>

#include <map>
#include <string>
#include <vector>

#include <npft/ptq/reconstruct.hpp>
#include <npft/ptq/trainable_lora.hpp>
#include <npft/ptq/trainable_rounding.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>

#include "../examples/08_ptq_study/reconstruction.hpp"
#include "study/ptq_grid.hpp"
#include "tiny_llama/blockwise.hpp"
#include "tiny_llama/model.hpp"

namespace {

using npft::Index;
using npft::Matrix;
using Packed = std::map<std::string, npft::quant::QuantizedMatrix>;

constexpr Index steps = 25;
constexpr Index batches = 4;
constexpr Index sequences_per_batch = 4;

Packed rtn(const tiny_llama::Model& model, int bits) {
    const npft::quant::Quantizer quantizer(npft::quant::UniformGrid(bits, 0));
    Packed packed;
    for (Index l = 0; l < model.config().layers; ++l)
        for (const auto kind : tiny_llama::linear_kinds)
            packed.emplace(tiny_llama::linear_name(l, kind),
                           quantizer.quantize(npft::MatrixView<const float>(npft::as_matrix_view(
                               model.weights().layers[static_cast<std::size_t>(l)].linear(kind)))));
    return packed;
}

std::vector<tiny_llama::Batch> calibration(const tiny_llama::Config& c) {
    std::vector<tiny_llama::Batch> out(batches);
    for (Index b = 0; b < batches; ++b)
        for (Index s = 0; s < sequences_per_batch; ++s) {
            std::vector<tiny_llama::Token> tokens;
            for (Index t = 0; t <= c.context; ++t)
                tokens.push_back(static_cast<tiny_llama::Token>((t * 7919 + s * 104729 + b * 1299709) % c.vocab));
            out[static_cast<std::size_t>(b)].sequences.push_back(std::move(tokens));
        }
    return out;
}

template <class Objective>
npft::ptq::ReconstructionReport run(tiny_llama::BlockwiseView& view, Packed& packed, const npft::ptq::CalibrationSource& source,
                                    const Objective& objective, int policy) {
    npft::ptq::ReconstructionOptions options;
    options.steps = steps;
    if (policy == 1) {
        options.learning_rate = 3e-2f;
        options.cosine_decay = false;
        return npft::ptq::reconstruct(view, packed, source, objective, options, npft::ptq::TrainRounding{});
    }
    if (policy == 2) return npft::ptq::reconstruct(view, packed, source, objective, options, npft::ptq::TrainLora{});
    options.learning_rate = 5e-3f;
    return npft::ptq::reconstruct(view, packed, source, objective, options, npft::ptq::TrainScales{});
}

void BM_Reconstruct(benchmark::State& state) {
    const auto policy = static_cast<int>(state.range(0));
    const auto objective = static_cast<int>(state.range(1));
    const tiny_llama::Config c = tiny_llama::Config::small();
    tiny_llama::Model model(c, 1);
    const tiny_llama::Weights fp = model.weights();
    const Packed given = rtn(model, 3);
    const auto batches_of_tokens = calibration(c);
    double window_seconds = 0.0, windows = 0.0;
    std::size_t peak = 0;
    for (auto _ : state) {
        state.PauseTiming();
        model.weights() = fp;
        Packed packed = given;
        state.ResumeTiming();
        tiny_llama::BlockwiseView view(model, c.context);
        view.set_threads(static_cast<int>(state.range(2)));
        const npft::ptq::CalibrationSource source{batches, [&](Index k) {
                                                      return view.embed(batches_of_tokens[static_cast<std::size_t>(k)]);
                                                  }};
        npft::ptq::ReconstructionReport report;
        if (objective == 0) report = run(view, packed, source, npft::ptq::SingleBlock{}, policy);
        else if (objective == 1) report = run(view, packed, source, npft::ptq::MultiBlock{2}, policy);
        else report = run(view, packed, source, npft::ptq::Downstream{1}, policy);
        for (const auto& w : report.windows) window_seconds += w.seconds / static_cast<double>(w.last_block - w.first_block + 1);
        windows += static_cast<double>(report.windows.size());
        peak = report.peak_activation_bytes;
        benchmark::DoNotOptimize(packed);
    }
    const double per_block = window_seconds / windows;
    state.counters["seconds_per_block"] = per_block;
    state.counters["seconds_per_step"] = per_block / static_cast<double>(steps);
    state.counters["peak_activation_MB"] = static_cast<double>(peak) / 1e6;
}

BENCHMARK(BM_Reconstruct)
    ->ArgsProduct({{0, 1, 2}, {0, 1, 2}, {1, 2}})
    ->ArgNames({"policy", "objective", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(2);

void BM_ReconstructReferenceShape(benchmark::State& state) {
    const std::string policy = study::ptq::policies[static_cast<std::size_t>(state.range(0))];
    const std::string objective = study::ptq::objectives[static_cast<std::size_t>(state.range(1))];
    const tiny_llama::Config c{.vocab = 4096, .layers = 6, .dim = 256, .heads = 8, .hidden = 768, .context = 256};
    tiny_llama::Model model(c, 1);
    model.set_threads(2);
    const tiny_llama::Weights fp = model.weights();
    std::vector<tiny_llama::Batch> calibration(8);
    for (std::size_t b = 0; b < calibration.size(); ++b) {
        std::vector<tiny_llama::Token> tokens;
        for (Index t = 0; t <= c.context; ++t)
            tokens.push_back(static_cast<tiny_llama::Token>((t * 7919 + static_cast<Index>(b) * 1299709) % c.vocab));
        calibration[b].sequences.push_back(std::move(tokens));
    }
    const ptq_study::ReconstructionBudget budget;  // the study's default
    double seconds = 0.0;
    std::size_t peak = 0;
    for (auto _ : state) {
        const auto r = ptq_study::reconstruct(model, c.context, 3, policy, objective, calibration, budget, 1, 2);
        seconds += r.report.seconds;
        peak = r.report.peak_activation_bytes;
        state.PauseTiming();
        model.weights() = fp;
        state.ResumeTiming();
    }
    state.counters["seconds_per_block"] = seconds / static_cast<double>(state.iterations() * c.layers);
    state.counters["peak_activation_MB"] = static_cast<double>(peak) / 1e6;
}

BENCHMARK(BM_ReconstructReferenceShape)
    ->ArgsProduct({{0, 1, 2}, {0, 1, 2, 3, 4}})
    ->ArgNames({"policy", "objective"})
    ->UseRealTime()
    ->Unit(benchmark::kSecond)
    ->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
