#pragma once
// Named starting points for a Pipeline. Start from one and change a field:
//   auto options = npft::presets::reference_options();
//   options.seed = 7;
//   auto pipe = npft::presets::reference<npft::quant::Uniform<4>>(options);
// reference()         reproduces the NPFT reference code's recipe (method.md);
// quantization_step() changes only the noise: the width of each outlier's quantization step, redrawn every step (the
//                     unbiased estimate of E_d[L(w + d)] that the second-order argument is about).
#include <utility>

#include "../hessian/hutchinson.hpp"
#include "../noise/schedule.hpp"
#include "../outliers/top_fraction.hpp"
#include "lora.hpp"
#include "name_filter.hpp"
#include "optimizer.hpp"
#include "pipeline.hpp"

namespace npft::presets {

/// The reference recipe's share of outliers: the top 0.05% of each weight matrix by diagonal Fisher.
inline constexpr double reference_outlier_fraction = 0.0005;

/// The reference recipe's run-time options (method.md, LLaMA): 3 stages of 64 steps; AdamW (weight decay 0.01) at
/// peak 5e-5 with linear decay to 0 within each stage, no warmup; LoRA rank 16, alpha 32, dropout 0.05 on q, k, v, o,
/// up, down (gate is perturbed, not adapted); the same adapter trained on across stages, W0 reloaded and noised afresh at
/// every stage, Fisher and outliers recomputed on the merged weights. Dropout 0.05 needs a model with the
/// LoraActivationModel capability; for a model without it set `options.peft = train::LoraOptions{.dropout = 0}`.
/// `stage_learning_rates = {5e-5, 5e-5, 5e-5, 5e-6, 5e-6, 5e-6}` with `stages = 6` gives the six-stage LLaMA schedule.
inline train::PipelineOptions reference_options() {
    train::PipelineOptions o;
    o.stages = 3;
    o.steps_per_stage = 64;
    o.learning_rate = 5e-5f;
    o.warmup_fraction = 0.0f;
    o.adapted = train::default_adapted_tensors();
    o.peft = train::LoraOptions{.rank = 16, .alpha = 32.0f, .dropout = 0.05f};
    o.refresh_selection = true;
    o.adapter_across_stages = train::AdapterAcrossStages::continue_training;
    return o;
}

/// The reference's noise: per output row, uniform over the range of that row's outlier values, zero-mean per row,
/// drawn once per stage.
using ReferenceNoise = noise::ReferenceSchedule;
/// Noise of one quantization step's width on each outlier, U(-delta/2, +delta/2), redrawn every step.
using QuantizationStepNoise = noise::Schedule<noise::QuantStepUniform, noise::Constant, noise::EveryStep>;

template <class QuantizerOrGrid, class Trace = hessian::Hutchinson<>>
using ReferencePipeline = train::Pipeline<outliers::TopFisher, ReferenceNoise, Trace, QuantizerOrGrid, train::AdamW>;
template <class QuantizerOrGrid, class Trace = hessian::Hutchinson<>>
using QuantizationStepPipeline =
    train::Pipeline<outliers::TopFisher, QuantizationStepNoise, Trace, QuantizerOrGrid, train::AdamW>;

/// The reference recipe around the grid you will quantize with (the grid only decides the final quantization here).
template <class QuantizerOrGrid, class Trace = hessian::Hutchinson<>>
ReferencePipeline<QuantizerOrGrid, Trace> reference(train::PipelineOptions options = reference_options(),
                                                    double outlier_fraction = reference_outlier_fraction,
                                                    Trace trace = {}) {
    return ReferencePipeline<QuantizerOrGrid, Trace>(std::move(options), outliers::TopFisher{.fraction = outlier_fraction},
                                                     ReferenceNoise{}, std::move(trace));
}

/// The reference recipe with quantization-step noise redrawn every step (the grid sets each outlier's step).
template <class QuantizerOrGrid, class Trace = hessian::Hutchinson<>>
QuantizationStepPipeline<QuantizerOrGrid, Trace> quantization_step(train::PipelineOptions options = reference_options(),
                                                                   double outlier_fraction = reference_outlier_fraction,
                                                                   Trace trace = {}) {
    return QuantizationStepPipeline<QuantizerOrGrid, Trace>(
        std::move(options), outliers::TopFisher{.fraction = outlier_fraction}, QuantizationStepNoise{}, std::move(trace));
}

}  // namespace npft::presets
