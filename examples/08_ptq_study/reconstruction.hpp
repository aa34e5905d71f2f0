#pragma once
// One reconstruction of the study: RTN of every linear on the per-channel grid, then npft::ptq::reconstruct with the
// named policy and objective, then the packed model. The figures of the reconstruction itself (seconds, peak
// activation bytes, the calibration error before and after) come back with it.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <npft/npft.hpp>
#include <npft/ptq/reconstruct.hpp>
#include <npft/ptq/trainable_lora.hpp>
#include <npft/ptq/trainable_rounding.hpp>

#include "study/ptq_grid.hpp"
#include "tiny_llama/blockwise.hpp"
#include "tiny_llama/model.hpp"
#include "tiny_llama/quantized_model.hpp"

namespace ptq_study {

using npft::Index;
using Packed = std::map<std::string, npft::quant::QuantizedMatrix>;

/// What every reconstruction of the study shares.
struct ReconstructionBudget {
    Index steps = 24;  // optimiser steps per window, one calibration batch each
    Index lora_rank = 4;
    // Learning rates per policy (examples/04_blockwise_ptq's, chosen there on the demo model): a relative change of a
    // scale, AdaRound's V (constant, its penalty bites at the end), LoRA's A and B.
    float lr_scales = 5e-3f, lr_rounding = 3e-2f, lr_lora = 1e-3f;

    std::string describe() const {
        return "steps=" + std::to_string(steps) + " lora-rank=" + std::to_string(lora_rank) + " lr=" + std::to_string(lr_scales) +
               "/" + std::to_string(lr_rounding) + "/" + std::to_string(lr_lora);
    }
};

/// RTN (asymmetric min-max, one scale and zero point per output channel) of every linear layer: the start of every
/// reconstruction and the study's RTN arm.
inline Packed rtn_per_channel(const tiny_llama::Model& model, int bits) {
    const npft::quant::Quantizer quantizer(npft::quant::UniformGrid(bits, 0));
    Packed packed;
    for (Index l = 0; l < model.config().layers; ++l)
        for (const auto kind : tiny_llama::linear_kinds)
            packed.emplace(tiny_llama::linear_name(l, kind),
                           quantizer.quantize(npft::MatrixView<const float>(
                               npft::as_matrix_view(model.weights().layers[static_cast<std::size_t>(l)].linear(kind)))));
    return packed;
}

inline tiny_llama::QuantizedModel packed_model(const tiny_llama::Model& model, const Packed& packed, int threads) {
    tiny_llama::QuantizedModel q(model);
    for (const auto& [name, matrix] : packed) q.set_linear(name, tiny_llama::PackedLinear(matrix));
    q.set_multiply_options({.threads = threads, .activations = npft::kernels::cpu::Activations::fp32});
    return q;
}

template <class F>
decltype(auto) with_objective(const std::string& name, F&& f) {
    const auto [window, depth] = study::ptq::window_and_depth(name);
    if (depth > 0) return f(npft::ptq::Downstream{.depth = depth});
    if (window == 1) return f(npft::ptq::SingleBlock{});
    return f(npft::ptq::MultiBlock{window});
}

struct ReconstructionResult {
    Packed packed;
    npft::ptq::ReconstructionReport report;
    double loss_before = 0.0, loss_after = 0.0;  // mean over windows of the calibration error
};

/// RTN at `bits`, reconstructed with `policy` (scales, rounding, lora) and `objective` (study::ptq::objectives) on
/// `calibration` (each batch: sequences of length + 1 tokens). Leaves the model's block weights dequantized: the
/// caller restores them. `seed` initialises what the policy draws (LoRA's B).
inline ReconstructionResult reconstruct(tiny_llama::Model& model, Index length, int bits, const std::string& policy,
                                        const std::string& objective, const std::vector<tiny_llama::Batch>& calibration,
                                        const ReconstructionBudget& budget, std::uint64_t seed, int threads) {
    ReconstructionResult out{rtn_per_channel(model, bits), {}, 0.0, 0.0};
    tiny_llama::BlockwiseView view(model, length);
    view.set_threads(threads);
    const npft::ptq::CalibrationSource source{static_cast<Index>(calibration.size()), [&](Index k) {
                                                  return view.embed(calibration[static_cast<std::size_t>(k)]);
                                              }};
    npft::ptq::ReconstructionOptions options;
    options.steps = budget.steps;
    with_objective(objective, [&](const auto& o) {
        if (policy == "scales") {
            options.learning_rate = budget.lr_scales;
            out.report = npft::ptq::reconstruct(view, out.packed, source, o, options, npft::ptq::TrainScales{});
        } else if (policy == "rounding") {
            options.learning_rate = budget.lr_rounding;
            options.cosine_decay = false;
            out.report = npft::ptq::reconstruct(view, out.packed, source, o, options, npft::ptq::TrainRounding{});
        } else {
            npft::require(policy == "lora", "unknown trainable-parameter policy '", policy, "' (expected scales, rounding or lora)");
            options.learning_rate = budget.lr_lora;
            out.report = npft::ptq::reconstruct(view, out.packed, source, o, options,
                                                npft::ptq::TrainLora{.shape = {.rank = budget.lora_rank, .seed = seed}});
        }
        return 0;
    });
    for (const auto& w : out.report.windows) {
        out.loss_before += w.loss_before / static_cast<double>(out.report.windows.size());
        out.loss_after += w.loss_after / static_cast<double>(out.report.windows.size());
    }
    return out;
}

}  // namespace ptq_study
