#pragma once
// The NPFT pipeline around a user's model: outlier selection from a Fisher pass, noise on the selected weights, PEFT
// training through the model's own loss-and-gradient, exact restore of the clean weights, quantization at the end.
// This file is the orchestrator (half of it the documented public API); its parts live beside it:
//   pipeline_options.hpp   run-time options (PipelineOptions) and FitSummary
//   pipeline_policies.hpp  what each compile-time policy must offer; NoTrace and NoQuantizer
//   managed_tensors.hpp    the managed tensors and what is done to all of them at once (write, gradients, step, merge)
//   perturbation.hpp       one tensor's noise (draw, apply, restore) and the guard around a noised model call
//   peft_lora.hpp          LoRA (weight or activation space) with its optimizer state and checkpoint tensors
//   peft_masked.hpp        masked weights with their optimizer state and checkpoint tensors
//   learning_rate.hpp      the learning-rate schedule policy
//   pipeline_checkpoint.hpp  the checkpoint (a safetensors file) of the whole state
//   pipeline_selection.hpp the Fisher pass (per sequence when the model splits batches)
//   outlier_trace.hpp      the outliers' Hessian trace over trace batches; paired before/after differences
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <map>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor_view.hpp"
#include "differentiable_model.hpp"
#include "learning_rate.hpp"
#include "loss_policy.hpp"
#include "optimizer.hpp"
#include "managed_tensors.hpp"
#include "outlier_trace.hpp"
#include "pipeline_options.hpp"
#include "pipeline_checkpoint.hpp"
#include "pipeline_policies.hpp"
#include "pipeline_selection.hpp"
#include "progress.hpp"

namespace npft::train {

namespace detail {
// Stream tags: each random use gets its own family of streams.
inline constexpr std::uint64_t noise_stream = 1;
inline constexpr std::uint64_t lora_stream = 2;
}  // namespace detail

/// The NPFT pipeline around a user's model.
///   Selector  : outliers::OutlierSelector  (which weights get noise), e.g. outliers::TopFisher
///   Noise     : noise::NoiseSchedule       (the noise on them and when it is redrawn)
///   Trace     : hessian::TraceEstimator    (the outliers' Hessian trace; NoTrace when none is asked for)
///   Quantizer : quant::Grid or quant::Quantizer<Grid> (steps for noise and selection; the final quantization), or
///               NoQuantizer when neither the selector nor the noise reads steps and quantize() is not called
///   Opt       : Optimizer (AdamW), Loss : LossPolicy (Perturbed), Schedule : LearningRateSchedule (LinearWarmupDecay)
template <class Selector, class Noise, class Trace = NoTrace, class QuantizerOrGrid = NoQuantizer, class Opt = AdamW,
          class Loss = Perturbed, class Schedule = LinearWarmupDecay>
class Pipeline {
    static_assert(outliers::check_outlier_selector<Selector>());
    static_assert(noise::check_noise_schedule<Noise>());
    static_assert(detail::check_trace_policy<Trace>());
    static_assert(detail::check_quantizer_or_grid<QuantizerOrGrid>());
    static_assert(detail::check_steps_have_a_grid<Selector, Noise, QuantizerOrGrid>());
    static_assert(detail::check_optimizer<Opt>());
    static_assert(detail::check_loss_policy<Loss>());
    static_assert(detail::check_learning_rate_schedule<Schedule>());

public:
    using selector_type = Selector;
    using noise_type = Noise;
    using trace_type = Trace;
    using quantizer_type = typename detail::quantizer_of<QuantizerOrGrid>::type;
    using optimizer_type = Opt;
    using loss_type = Loss;
    using schedule_type = Schedule;
    static constexpr bool has_trace = !std::same_as<Trace, NoTrace>;
    static constexpr bool has_quantizer = !std::same_as<quantizer_type, NoQuantizer>;

    /// Every policy object by name, for the constructor below: `Pipe(options, {.noise = ..., .loss = Balanced{0.5f}})`
    /// sets the ones you name and defaults the rest (designated initializers, in this order).
    struct Policies {
        Selector selector{};
        Noise noise{};
        Trace trace{};
        quantizer_type quantizer{};
        Opt optimizer{};
        Loss loss{};
        Schedule schedule{};
    };

    Pipeline(PipelineOptions options, Policies p)
        : Pipeline(std::move(options), std::move(p.selector), std::move(p.noise), std::move(p.trace), std::move(p.quantizer),
                   std::move(p.optimizer), std::move(p.loss), std::move(p.schedule)) {}

    explicit Pipeline(PipelineOptions options = {}, Selector selector = {}, Noise noise = {}, Trace trace = {},
                      quantizer_type quantizer = {}, Opt optimizer = {}, Loss loss = {}, Schedule schedule = {})
        : options_(std::move(options)), selector_(std::move(selector)), noise_(std::move(noise)), trace_(std::move(trace)),
          quantizer_(std::move(quantizer)), optimizer_(std::move(optimizer)), loss_(std::move(loss)),
          schedule_(std::move(schedule)) {
        validate(options_);
        (void)loss_.perturbed_weight();  // range check
        require(has_trace || options_.trace_every == 0, "PipelineOptions::trace_every is ", options_.trace_every,
                " but the pipeline's Trace policy is train::NoTrace: give it a trace estimator (e.g. hessian::Hutchinson<>)");
    }

    const PipelineOptions& options() const { return options_; }
    Index total_steps() const { return options_.stages * options_.steps_per_stage; }
    /// Global steps completed (by fit, or restored by resume).
    Index steps_done() const { return step_; }
    /// Noise draws made so far (the draw number keys the noise stream).
    std::uint64_t draws() const { return draw_; }

    /// Names of the tensors the pipeline manages (perturbed or adapted), in the model's parameter order.
    std::vector<std::string> tensor_names() const { return tensors_.names(); }
    /// The current outlier selection of a perturbed tensor.
    const outliers::OutlierMask& selection(const std::string& name) const { return tensors_.find(name).perturbation.selection; }
    /// Every perturbed tensor's current outliers, by name (e.g. for train::outlier_attribution, or to take a paired
    /// trace after training on the same outliers: outlier_trace(model, batch, saved_selections)).
    std::map<std::string, outliers::OutlierMask> selections() const { return tensors_.selections(); }
    /// The clean weights of a managed tensor, never with noise: with AdapterAcrossStages::restart the adapters are merged
    /// in at every stage end; with continue_training they stay W0 until the merge after the last stage.
    const Matrix& clean_weights(const std::string& name) const { return tensors_.find(name).clean; }
    /// The LoRA adapter of an adapted tensor (LoRA mode only).
    const LoraAdapter& adapter(const std::string& name) const {
        const auto* lora = tensors_.find(name).lora();
        require(lora != nullptr, "tensor '", name, "' has no LoRA adapter");
        return lora->adapter();
    }

    /// Runs every stage from scratch. `batches` is a random-access range of Batch (step k uses batch k mod size);
    /// `calibration` feeds the Fisher pass (and the trace, without trace batches); `progress` is called after every step
    /// with a Report and may return Control::stop. After a complete run the model's values hold the merged clean weights.
    template <class Model, std::ranges::random_access_range Batches, std::ranges::random_access_range Calibration,
              std::invocable<const Report&> Progress = decltype(progress::quiet())>
    FitSummary fit(Model& model, const Batches& batches, const Calibration& calibration, Progress&& report = progress::quiet()) {
        return fit(model, batches, calibration, first_of(calibration), std::forward<Progress>(report));
    }

    /// fit() with the periodic trace (PipelineOptions::trace_every) estimated on the mean loss over `trace_batches`
    /// (held-out data of the caller's choice) instead of the first calibration batch.
    template <class Model, std::ranges::random_access_range Batches, std::ranges::random_access_range Calibration,
              std::ranges::random_access_range TraceBatches, std::invocable<const Report&> Progress = decltype(progress::quiet())>
    FitSummary fit(Model& model, const Batches& batches, const Calibration& calibration, const TraceBatches& trace_batches,
                   Progress&& report = progress::quiet()) {
        check_model<Model, Batches, Calibration>();
        bind(model);
        step_ = 0;
        draw_ = 0;
        noise_scale_ = 0.0f;
        return run(model, batches, calibration, trace_batches, report);
    }

    /// fit() with the training batches also used for calibration.
    template <class Model, std::ranges::random_access_range Batches,
              std::invocable<const Report&> Progress = decltype(progress::quiet())>
    FitSummary fit(Model& model, const Batches& batches, Progress&& report = progress::quiet()) {
        return fit(model, batches, batches, std::forward<Progress>(report));
    }

    /// Continues a run from a checkpoint written by save_checkpoint (same options, policies and model shapes). The
    /// resumed run ends bit-identical to one that was never interrupted.
    template <class Model, std::ranges::random_access_range Batches, std::ranges::random_access_range Calibration,
              std::invocable<const Report&> Progress = decltype(progress::quiet())>
    FitSummary resume(const std::string& checkpoint, Model& model, const Batches& batches, const Calibration& calibration,
                      Progress&& report = progress::quiet()) {
        return resume(checkpoint, model, batches, calibration, first_of(calibration), std::forward<Progress>(report));
    }
    /// resume() with the periodic trace on `trace_batches`.
    template <class Model, std::ranges::random_access_range Batches, std::ranges::random_access_range Calibration,
              std::ranges::random_access_range TraceBatches, std::invocable<const Report&> Progress = decltype(progress::quiet())>
    FitSummary resume(const std::string& checkpoint, Model& model, const Batches& batches, const Calibration& calibration,
                      const TraceBatches& trace_batches, Progress&& report = progress::quiet()) {
        check_model<Model, Batches, Calibration>();
        bind(model);
        load_checkpoint(checkpoint);
        tensors_.copy_clean_into_model();
        return run(model, batches, calibration, trace_batches, report);
    }

    /// Runs the Fisher pass over `calibration` on the model's current values and selects the outliers of every perturbed
    /// tensor (fit does this at every stage start; call it directly to measure the trace before training).
    template <class Model, std::ranges::random_access_range Calibration>
    void select(Model& model, const Calibration& calibration) {
        using Batch = std::ranges::range_value_t<Calibration>;
        static_assert(DifferentiableModel<Model, Batch>,
                      "the model must satisfy npft::train::DifferentiableModel<Model, Batch> (parameters() and "
                      "loss_and_gradient(batch))");
        if (!tensors_.bound_to(&model)) bind(model);
        for (auto& t : tensors_.all()) t.clean = to_eigen(MatrixView<const float>(tensors_.value_of(t)));
        select_outliers<Selector, Noise>(selector_, quantizer_, tensors_, options_, model, calibration);
    }

    /// Hutchinson estimate of the Hessian trace restricted to the current outliers (all perturbed tensors together), on
    /// the model's current values and one batch; TraceEstimate::samples holds the per-probe values. The model's values
    /// are left as they were.
    template <class Model, class Batch>
    hessian::TraceEstimate outlier_trace(Model& model, const Batch& batch) {
        return outlier_trace(model, batch, selections());
    }
    /// The same on the outliers given by `outliers` (a name -> mask map, as selections() returns): keep the selection
    /// from before training and pass it after training, and the two estimates use the same mask and probes, so
    /// paired_difference(before, after) gives the change with its own standard error.
    template <class Model, class Batch>
    hessian::TraceEstimate outlier_trace(Model& model, const Batch& batch, const std::map<std::string, outliers::OutlierMask>& outliers) {
        static_assert(DifferentiableModel<Model, Batch>, "the model must satisfy npft::train::DifferentiableModel<Model, Batch>");
        require(tensors_.bound_to(&model),
                "outlier_trace needs a selection on this model: call select(model, calibration) or fit() first");
        return estimate_trace(model, std::span<const Batch>(&batch, 1), outliers);
    }

    /// One QuantizedMatrix per perturbed tensor of the model's current values, by name.
    template <class Model>
    std::map<std::string, quant::QuantizedMatrix> quantize(Model& model) const {
        static_assert(has_quantizer, "this pipeline's quantizer policy is train::NoQuantizer: give it a quant::Grid to "
                                     "quantize(), or quantize the fine-tuned weights yourself");
        std::map<std::string, quant::QuantizedMatrix> out;
        for (const Parameter& p : model.parameters()) {
            if (!is_perturbed(p)) continue;
            try {
                out.emplace(p.name, quantizer_.quantize(MatrixView<const float>(p.value)));
            } catch (const Error& e) {
                fail("quantize: tensor '", p.name, "' (", p.value.rows(), " x ", p.value.cols(), "): ", e.what());
            }
        }
        require(!out.empty(), "quantize: no parameter of the model matches the perturbed patterns ", options_.perturbed.describe());
        return out;
    }

    /// Writes the whole training state (clean weights, selection, current noise, adapters, optimizer state, step and
    /// draw counters) to `path` as a safetensors file (pipeline_checkpoint.hpp lists its entries).
    void save_checkpoint(const std::string& path) const {
        require(!tensors_.empty(), "save_checkpoint: nothing to save before fit() has bound a model");
        CheckpointWriter w;
        write_pipeline_header(w, options_, step_, draw_, noise_scale_, tensor_names());
        tensors_.save(w);
        w.save(path);
    }

private:
    using Tensor = typename ManagedTensors<Opt>::Tensor;

    PipelineOptions options_;
    Selector selector_;
    Noise noise_;
    Trace trace_;
    quantizer_type quantizer_;
    Opt optimizer_;
    Loss loss_;
    Schedule schedule_;

    ManagedTensors<Opt> tensors_;
    Index step_ = 0;
    std::uint64_t draw_ = 0;
    Index draws_in_stage_ = 0;  // draws made since the current stage began (not checkpointed: only gates a warning)
    float noise_scale_ = 0.0f;

    // ---- helpers ------------------------------------------------------------------------------------------------------
    /// The first calibration batch as a range of one (none when there is no calibration batch): the default trace batch.
    /// (A two-member range rather than std::ranges::subrange, which clang 14 cannot instantiate with libstdc++ 12.)
    template <class Iterator>
    struct Prefix {
        Iterator first;
        std::ptrdiff_t size;
        Iterator begin() const { return first; }
        Iterator end() const { return first + size; }
    };
    template <class Calibration>
    static auto first_of(const Calibration& calibration) {
        const auto begin = std::ranges::begin(calibration);
        return Prefix<decltype(begin)>{begin, std::min<std::ptrdiff_t>(1, std::ranges::ssize(calibration))};
    }
    static MatrixView<const float> view_of(const Matrix& m) {
        return m.size() == 0 ? MatrixView<const float>() : MatrixView<const float>::dense(m.data(), m.rows(), m.cols());
    }
    bool is_perturbed(const Parameter& p) const {
        const bool matrix = p.value.rows() > 1 && p.value.cols() > 1;
        return options_.perturbed.matches(p.name) && (matrix || options_.perturb_vectors);
    }

    template <class Model, class Batches, class Calibration>
    static constexpr void check_model() {
        using Batch = std::ranges::range_value_t<Batches>;
        static_assert(DifferentiableModel<Model, Batch>,
                      "the model must satisfy npft::train::DifferentiableModel<Model, Batch>: `parameters()` returning "
                      "std::vector<npft::train::Parameter> and `loss_and_gradient(const Batch&)` returning the loss");
        static_assert(DifferentiableModel<Model, std::ranges::range_value_t<Calibration>>,
                      "the model must accept the calibration batches too (DifferentiableModel<Model, CalibrationBatch>)");
    }

    /// Binds the model's parameters and checks every perturbed tensor against the grid now, naming the tensor, rather
    /// than in quantize() after the whole fine-tuning.
    template <class Model>
    void bind(Model& model) {
        tensors_.bind(model.parameters(), &model, options_, [&](const Parameter& p) { return is_perturbed(p); });
        if constexpr (has_quantizer) {
            for (const auto& t : tensors_.all()) {
                if (!t.perturbed) continue;
                try {
                    (void)quantizer_.grid().group_size(t.clean.cols());
                } catch (const Error& e) {
                    fail("perturbed tensor '", t.name, "' (", t.clean.rows(), " x ", t.clean.cols(), ") does not fit the quantizer: ",
                         e.what(), "; leave it out of PipelineOptions::perturbed or choose another group size");
                }
            }
        }
    }

    // ---- stages and steps -------------------------------------------------------------------------------------------
    template <class Model, class Calibration>
    void begin_stage(Model& model, const Calibration& calibration, Index stage) {
        tensors_.copy_clean_into_model();
        if (continues_adapter(options_)) tensors_.write_peft();  // the Fisher pass sees W0 + (alpha/r) B A, no noise
        if (stage == 0 || options_.refresh_selection) {
            select_outliers<Selector, Noise>(selector_, quantizer_, tensors_, options_, model, calibration);
        } else if constexpr (Noise::needs_quant_steps) {
            for (auto& t : tensors_.all())
                if (t.perturbed) t.perturbation.quant_steps = quantization_steps(quantizer_, selection_basis(t, options_));
        }
        const bool new_adapters = stage == 0 || !continues_adapter(options_);
        for (auto& t : tensors_.all()) {
            if (auto* lora = t.lora()) {
                if (new_adapters) {
                    lora->start(RandomKey{options_.seed, make_stream(static_cast<std::uint64_t>(stage),
                                                                     static_cast<std::uint64_t>(t.parameter), detail::lora_stream)},
                                optimizer_);
                } else {
                    lora->restart_optimizer(optimizer_);  // the reference trains the same adapter on with a new trainer
                }
            } else if (auto* masked = t.masked()) {
                const auto& masks = std::get<MaskedWeights>(options_.peft).masks;
                const auto it = masks.find(t.name);
                masked->start(it != masks.end() ? it->second.positions
                                                : MaskedTensor<Opt>::complement(t.perturbation.selection, t.clean.size()),
                              optimizer_);
            }
        }
    }

    void end_stage(Index stage) {
        if (continues_adapter(options_) && stage + 1 < options_.stages) return;  // merged once, after the last stage
        tensors_.merge_adapters();
    }

    void draw_noise(Index step) {
        ++draw_;
        noise_scale_ = static_cast<float>(noise_.scale(step, total_steps()));
        tensors_.each([&](Tensor& t) {
            if (!t.perturbed) return;
            t.perturbation.draw(noise_, view_of(t.clean), noise_scale_,
                                RandomKey{options_.seed, make_stream(draw_, static_cast<std::uint64_t>(t.parameter), detail::noise_stream)});
        });
    }

    void prepare_adapters(bool training) {
        tensors_.prepare_adapters(training, options_.seed, static_cast<std::uint64_t>(step_));
    }

    /// One optimizer step on `batch`: the loss policy's clean and/or noised model calls, their PEFT gradients, the update.
    template <class Model, class Batch>
    double train_step(Model& model, const Batch& batch, float lr) {
        const float b = loss_.perturbed_weight();
        double loss = 0.0;
        tensors_.write_peft();
        if (b < 1.0f) {
            prepare_adapters(true);
            const double clean_loss = static_cast<double>(model.loss_and_gradient(batch));
            tensors_.collect_gradients(1.0f - b, false);
            auto guard = tensors_.noise_guard();
            prepare_adapters(true);  // the same dropout mask as the clean pass: it is keyed by the step
            const double perturbed_loss = static_cast<double>(model.loss_and_gradient(batch));
            tensors_.collect_gradients(b, true);
            loss = (1.0 - static_cast<double>(b)) * clean_loss + static_cast<double>(b) * perturbed_loss;
        } else {
            auto guard = tensors_.noise_guard();
            prepare_adapters(true);
            loss = static_cast<double>(model.loss_and_gradient(batch));
            tensors_.collect_gradients(1.0f, false);
        }
        const std::string where = tensors_.first_non_finite_gradient();
        require(std::isfinite(loss) && where.empty(), "training diverged at step ", step_ + 1, " of ", total_steps(),
                ": the loss is ", loss,
                where.empty() ? std::string("; all adapter gradients are finite")
                              : "; the first non-finite gradient is in tensor '" + where + "'");
        tensors_.optimizer_step(optimizer_, lr);
        return loss;
    }

    template <class Model, class Batches, class Calibration, class TraceBatches, class Progress>
    FitSummary run(Model& model, const Batches& batches, const Calibration& calibration, const TraceBatches& trace_batches,
                   Progress& report) {
        const auto batch_count = static_cast<Index>(std::ranges::size(batches));
        require(batch_count > 0, "fit needs at least one training batch, got an empty range");
        require(options_.trace_every == 0 || std::ranges::size(trace_batches) > 0,
                "PipelineOptions::trace_every is set but there are no trace batches (nor calibration batches) to estimate "
                "the trace on");
        FitSummary summary;
        const Index n = options_.steps_per_stage;
        // Activation-space LoRA (dropout > 0): hand the adapters to the model for this run, take them back on any exit.
        struct Detach {
            ManagedTensors<Opt>* tensors;
            Model* model;
            ~Detach() { tensors->detach_adapters(*model); }
        } detach{&tensors_, &model};
        if (uses_lora(options_) && std::get<LoraOptions>(options_.peft).dropout > 0.0f)
            tensors_.attach_adapters(model, std::get<LoraOptions>(options_.peft).dropout);
        while (step_ < total_steps()) {
            const Index stage = step_ / n, local = step_ % n;
            prepare_adapters(false);  // Fisher pass and trace: no dropout
            if (local == 0) {
                begin_stage(model, calibration, stage);
                draws_in_stage_ = 0;
            }
            if (local == 0 || noise_.redraw_at(step_, n)) {
                draw_noise(step_);
                ++draws_in_stage_;
            }
            const auto& batch = std::ranges::begin(batches)[step_ % batch_count];
            const float lr = schedule_.rate(options_, stage, local);
            const double loss = train_step(model, batch, lr);
            ++step_;

            Report r;
            r.step = step_;
            r.total_steps = total_steps();
            r.stage = stage;
            r.loss = loss;
            r.noise_scale = noise_scale_;
            r.learning_rate = lr;
            if constexpr (has_trace) {
                if (options_.trace_every > 0 && step_ % options_.trace_every == 0) {
                    prepare_adapters(false);
                    tensors_.write_peft();
                    const auto estimate = estimate_trace(model, trace_batches, selections());
                    r.trace = estimate.value;
                    r.trace_standard_error = estimate.standard_error;
                }
            }
            if (local == n - 1) {
                if (options_.check_draw_cancellation && draws_in_stage_ == 1 && n > 1) {
                    r.warning = check_draw_cancellation(model, batch, stage);
                    if (!r.warning.empty()) summary.warnings.push_back(r.warning);
                }
                end_stage(stage);
            }
            if (options_.checkpoint_every > 0 && step_ % options_.checkpoint_every == 0) save_checkpoint(options_.checkpoint_path);
            summary.last_loss = loss;
            summary.steps_done = step_;
            bool stop = false;
            if constexpr (std::is_convertible_v<std::invoke_result_t<Progress&, const Report&>, Control>) {
                stop = report(r) == Control::stop;
            } else {
                report(r);
            }
            if (stop && step_ < total_steps()) {
                tensors_.detach_adapters(model);  // the model is left with LoRA in its weights, as without the capability
                tensors_.write_peft();            // leave a usable model: clean + adapters, no noise
                return summary;
            }
        }
        tensors_.copy_clean_into_model();
        summary.finished = true;
        return summary;
    }

    /// The failure mode of one draw kept for a whole stage at a high learning rate: the adapter learns -noise, so the
    /// model is good only with that draw in it. Detected by the loss on the stage's last batch with and without the
    /// draw (adapters as they are now, no dropout); a warning (empty when fine) names both losses.
    template <class Model, class Batch>
    std::string check_draw_cancellation(Model& model, const Batch& batch, Index stage) {
        bool any_noise = false;
        for (const auto& t : tensors_.all()) any_noise |= t.perturbation.any_noise();
        if (!any_noise) return {};
        prepare_adapters(false);
        tensors_.write_peft();
        double with_draw = 0.0;
        {
            auto guard = tensors_.noise_guard();
            with_draw = static_cast<double>(model.loss_and_gradient(batch));
        }
        const double without_draw = static_cast<double>(model.loss_and_gradient(batch));
        if (!(without_draw > with_draw)) return {};
        return "stage " + std::to_string(stage + 1) + ": the loss without the stage's noise draw (" + std::to_string(without_draw) +
               ") is higher than with it (" + std::to_string(with_draw) +
               "): the adapter has learned to cancel the one fixed draw. Redraw more often (e.g. noise::EveryStep, "
               "presets::quantization_step()) or lower the learning rate";
    }

    // ---- Hessian trace ----------------------------------------------------------------------------------------------
    template <class Model, class TraceBatches>
    hessian::TraceEstimate estimate_trace(Model& model, const TraceBatches& trace_batches,
                                          const std::map<std::string, outliers::OutlierMask>& outliers) {
        // The estimator sees the perturbed tensors as one flat vector (model order, each row-major); the outliers of all
        // of them form one 0/1 mask over it. The probes are the estimator's own (fixed seed), so estimates taken at
        // different steps use the same probes and their differences are not probe noise.
        auto [names, mask] = outlier_indicator(tensors_.all(), outliers);
        BatchMeanHvp<Model, TraceBatches> hvp(model, trace_batches, std::move(names));
        return trace_.estimate(hvp, std::span<const float>(mask));
    }

    // ---- checkpoints ------------------------------------------------------------------------------------------------
    void load_checkpoint(const std::string& path) {
        const CheckpointReader r(path);
        check_pipeline_header(r, options_, tensor_names());
        step_ = r.integer("npft.step");
        draw_ = r.unsigned_integer("npft.draw");
        noise_scale_ = r.exact_float("npft.noise_scale");
        require(step_ >= 0 && step_ <= total_steps(), "checkpoint '", path, "': step ", step_, " is outside [0, ", total_steps(), "]");
        tensors_.load(r, optimizer_);
    }
};

}  // namespace npft::train

namespace npft {
using train::Pipeline;
}  // namespace npft
