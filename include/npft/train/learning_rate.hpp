#pragma once
// The learning-rate schedule policy of the pipeline: the rate of every optimizer step from the options, the stage and
// the step within the stage. Each stage restarts the schedule (the reference trains each stage as a new run).
#include <cmath>
#include <concepts>

#include "../core/config.hpp"
#include "pipeline_options.hpp"

namespace npft::train {

/// s.rate(options, stage, step_in_stage) -> the learning rate of that step (step_in_stage in [0, steps_per_stage)).
template <class S>
concept LearningRateSchedule = requires(const S& s, const PipelineOptions& o, Index stage, Index step) {
    { s.rate(o, stage, step) } -> std::convertible_to<float>;
};

/// The Hugging Face linear schedule within each stage: ramp from 0 over warmup_fraction of the stage, then decay linearly
/// to zero at the stage end. The peak is PipelineOptions::learning_rate, or the stage's entry of stage_learning_rates.
struct LinearWarmupDecay {
    float rate(const PipelineOptions& o, Index stage, Index local) const {
        const float peak = o.stage_learning_rates.empty() ? o.learning_rate
                                                          : o.stage_learning_rates[static_cast<std::size_t>(stage)];
        const Index n = o.steps_per_stage;
        const auto warmup = static_cast<Index>(std::llround(static_cast<double>(o.warmup_fraction) * static_cast<double>(n)));
        if (local < warmup) return peak * static_cast<float>(local) / static_cast<float>(warmup);
        return peak * static_cast<float>(n - local) / static_cast<float>(n - warmup);
    }
};

static_assert(LearningRateSchedule<LinearWarmupDecay>);

}  // namespace npft::train
