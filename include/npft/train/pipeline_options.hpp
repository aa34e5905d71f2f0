#pragma once
// The pipeline's run-time options (PipelineOptions), what a run reports back (FitSummary), and the choices they name:
// which parameters train (Peft) and what happens to LoRA adapters between stages (AdapterAcrossStages).
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../outliers/selector.hpp"
#include "lora.hpp"
#include "name_filter.hpp"

namespace npft::train {

/// PEFT by training a subset of the weights themselves. Tensors chosen by PipelineOptions::adapted train the positions of
/// their entry in `masks` (flat row-major positions, as outlier masks are), or, without an entry, all their non-outlier
/// weights (the complement of the current selection).
struct MaskedWeights {
    std::map<std::string, outliers::OutlierMask> masks{};
};

/// Which parameters train: LoRA adapters (default) or a masked subset of the weights.
using Peft = std::variant<LoraOptions, MaskedWeights>;

/// What happens to the LoRA adapters between stages.
///   restart           : merge the adapters into the clean weights at every stage end and start new ones (A keyed by the
///                       stage, B = 0); the next stage's noise and selection are taken from the merged weights.
///   continue_training : the reference code's behaviour. The clean weights stay the original W0 for the whole run; each
///                       stage computes Fisher and outliers on the merged weights W0 + (alpha/r) B A, draws fresh noise
///                       on W0, and keeps training the same adapter. The adapter is merged into W0 once, after the last
///                       stage. (Both reset the optimizer state and the learning-rate schedule at every stage start.)
enum class AdapterAcrossStages { restart, continue_training };

/// Run-time options. Defaults follow method.md's recipe where a default can (3 stages of 64 steps, lr 5e-5 with linear
/// decay within each stage, LoRA rank 16 / alpha 32 on q, k, v, o, up, down, selection refreshed at every stage), with
/// two exceptions: adapters restart at every stage (presets::reference() continues them, as the reference code does)
/// and LoRA dropout is 0 (it needs the model's cooperation, see LoraActivationModel).
struct PipelineOptions {
    Index stages = 3;                        ///< epochs; each ends by merging the adapters into the clean weights
    Index steps_per_stage = 64;              ///< optimizer steps per stage; step k uses batch k mod batches.size()
    float learning_rate = 5e-5f;             ///< peak learning rate of every stage
    std::vector<float> stage_learning_rates{};///< optional: one peak per stage (overrides learning_rate)
    float warmup_fraction = 0.0f;            ///< linear warmup over this share of a stage, then linear decay to 0
    std::uint64_t seed = 0;                  ///< keys every random draw (noise, adapter init, trace probes)
    NameFilter perturbed = NameFilter::all();  ///< tensors that get outliers selected and noised (weight matrices only:
                                               ///< a parameter with one row or one column is left out, see perturb_vectors)
    bool perturb_vectors = false;              ///< also perturb parameters with one row or one column (biases, norms)
    NameFilter adapted = default_adapted_tensors();       ///< tensors that train (through LoRA or their own weights)
    Peft peft = LoraOptions{};
    bool refresh_selection = true;  ///< re-run Fisher and selection on the merged weights at every stage start
    AdapterAcrossStages adapter_across_stages = AdapterAcrossStages::restart;  ///< LoRA only
    /// At the end of a stage whose steps all saw one draw, compare the loss with and without that draw (two extra model
    /// calls on the stage's last batch); when removing the draw makes the loss worse, the adapter has learned to cancel
    /// the draw, and FitSummary::warnings and the Report say so.
    bool check_draw_cancellation = true;
    /// Estimate the outliers' Hessian trace every N steps (0: never). Each estimate costs 2 model calls per probe and
    /// trace batch (the trace batches are fit's `trace_batches` argument, else the first calibration batch).
    Index trace_every = 0;
    std::string checkpoint_path{};  ///< where save_checkpoint writes during fit
    Index checkpoint_every = 0;     ///< write a checkpoint every N steps (0: never)
    /// Threads for npft's own per-step work (noise draws, writing the effective weights, adapter gradients, optimizer
    /// steps, merges, Fisher accumulation), split by tensor over the worker pool (kernels/cpu/threading.hpp). Same bits
    /// on any count. The model is always called from the calling thread; with threads > 1 the policies' const members
    /// (noise draw, optimizer step) run concurrently for different tensors.
    int threads = 1;
};

/// What fit() or resume() did.
struct FitSummary {
    Index steps_done = 0;  ///< global steps completed so far
    bool finished = false; ///< all stages ran (false when the progress callback asked to stop)
    double last_loss = std::numeric_limits<double>::quiet_NaN();
    std::vector<std::string> warnings{};  ///< e.g. the adapter learned to cancel a fixed draw (check_draw_cancellation)
};

inline bool uses_lora(const PipelineOptions& o) { return std::holds_alternative<LoraOptions>(o.peft); }
inline bool continues_adapter(const PipelineOptions& o) {
    return uses_lora(o) && o.adapter_across_stages == AdapterAcrossStages::continue_training;
}

/// Throws npft::Error naming the first option out of range.
inline void validate(const PipelineOptions& o) {
    require(o.stages >= 1, "PipelineOptions::stages must be at least 1, got ", o.stages);
    require(o.steps_per_stage >= 1, "PipelineOptions::steps_per_stage must be at least 1, got ", o.steps_per_stage);
    require(std::isfinite(o.learning_rate) && o.learning_rate >= 0.0f,
            "PipelineOptions::learning_rate must be finite and non-negative, got ", o.learning_rate);
    require(o.stage_learning_rates.empty() || static_cast<Index>(o.stage_learning_rates.size()) == o.stages,
            "PipelineOptions::stage_learning_rates must be empty or hold one rate per stage (", o.stages, "), got ",
            o.stage_learning_rates.size());
    for (const float lr : o.stage_learning_rates)
        require(std::isfinite(lr) && lr >= 0.0f, "PipelineOptions::stage_learning_rates holds ", lr,
                ", expected finite non-negative rates");
    require(o.warmup_fraction >= 0.0f && o.warmup_fraction < 1.0f, "PipelineOptions::warmup_fraction must be in [0, 1), got ",
            o.warmup_fraction);
    require(o.threads >= 1, "PipelineOptions::threads must be at least 1, got ", o.threads);
    require(o.trace_every >= 0, "PipelineOptions::trace_every must be non-negative, got ", o.trace_every);
    require(o.checkpoint_every >= 0, "PipelineOptions::checkpoint_every must be non-negative, got ", o.checkpoint_every);
    require(o.checkpoint_every == 0 || !o.checkpoint_path.empty(), "PipelineOptions::checkpoint_every is ",
            o.checkpoint_every, " but checkpoint_path is empty");
    if (uses_lora(o)) (void)LoraAdapter(1, 1, std::get<LoraOptions>(o.peft));  // rank and alpha checks
    require(uses_lora(o) || o.adapter_across_stages == AdapterAcrossStages::restart,
            "PipelineOptions::adapter_across_stages = continue_training needs LoRA (peft = LoraOptions{...}); masked "
            "weights train the clean weights themselves");
}

}  // namespace npft::train

namespace npft {
using train::AdapterAcrossStages;
using train::PipelineOptions;
}  // namespace npft
