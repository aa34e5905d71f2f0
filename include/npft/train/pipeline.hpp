#pragma once
// The NPFT pipeline: outlier selection from a Fisher pass, noise on the selected weights, PEFT training of the user's
// model through its own loss-and-gradient, exact restore of the clean weights, and quantization at the end.
// Policies are chosen at compile time; everything else (steps, learning rate, which tensors) is a run-time option.
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <map>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor_view.hpp"
#include "../hessian/fisher.hpp"
#include "../hessian/hutchinson.hpp"
#include "../hessian/hvp.hpp"
#include "../kernels/cpu/threading.hpp"
#include "../noise/schedule.hpp"
#include "../outliers/selector.hpp"
#include "../quant/grid.hpp"
#include "../quant/quantizer.hpp"
#include "checkpoint.hpp"
#include "differentiable_model.hpp"
#include "lora.hpp"
#include "lora_activation.hpp"
#include "loss_policy.hpp"
#include "name_filter.hpp"
#include "optimizer.hpp"
#include "progress.hpp"

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
    index stages = 3;                        ///< epochs; each ends by merging the adapters into the clean weights
    index steps_per_stage = 64;              ///< optimizer steps per stage; step k uses batch k mod batches.size()
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
    index trace_every = 0;          ///< estimate the outliers' Hessian trace every N steps (0: never)
    std::string checkpoint_path{};  ///< where save_checkpoint writes during fit
    index checkpoint_every = 0;     ///< write a checkpoint every N steps (0: never)
    /// Threads for npft's own per-step work (noise draws, writing the effective weights, adapter gradients, optimizer
    /// steps, merges), split by tensor over the worker pool (kernels/cpu/threading.hpp). Same bits on any count. The
    /// model is always called from the calling thread; with threads > 1 the policies' const members (noise draw,
    /// optimizer step) run concurrently for different tensors.
    int threads = 1;
};

/// What fit() or resume() did.
struct FitSummary {
    index steps_done = 0;  ///< global steps completed so far
    bool finished = false; ///< all stages ran (false when the progress callback asked to stop)
    double last_loss = std::numeric_limits<double>::quiet_NaN();
    std::vector<std::string> warnings{};  ///< e.g. the adapter learned to cancel a fixed draw (check_draw_cancellation)
};

namespace detail {

template <class Q>
concept IsQuantizer = requires { typename Q::grid_type; } && quant::Grid<typename Q::grid_type> &&
                      std::same_as<Q, quant::Quantizer<typename Q::grid_type>>;

template <class Q>
struct quantizer_of {
    using type = quant::Quantizer<Q>;
};
template <class Q>
    requires IsQuantizer<Q>
struct quantizer_of<Q> {
    using type = Q;
};

/// A quantization policy: a Grid (wrapped in a round-to-nearest Quantizer) or a Quantizer<Grid>.
template <class Q>
concept QuantizerOrGrid = quant::Grid<Q> || IsQuantizer<Q>;

template <class Q>
consteval bool check_quantizer_or_grid() {
    static_assert(QuantizerOrGrid<Q>,
                  "the quantizer policy must be a quant::Grid (members bits(), format(), group_size(cols), "
                  "fit(values, importance)) or a quant::Quantizer<Grid>");
    return QuantizerOrGrid<Q>;
}
template <class O>
consteval bool check_optimizer() {
    static_assert(requires(const O& o, index n) { o.make_state(n); },
                  "an Optimizer needs a nested type `State` and a member `State make_state(index size) const`");
    static_assert(requires(const O& o, typename O::State& s, std::span<float> p, std::span<const float> g, float lr) {
        o.step(s, p, g, lr);
    }, "an Optimizer needs a member `void step(State&, std::span<float> params, std::span<const float> grads, float lr) const`");
    static_assert(requires(typename O::State& s) {
        { s.buffers() } -> std::same_as<std::vector<std::span<float>>>;
        { s.steps } -> std::convertible_to<std::int64_t>;
    }, "an Optimizer's State needs `std::int64_t steps` and `std::vector<std::span<float>> buffers()` (for checkpoints)");
    return Optimizer<O>;
}
/// A trace policy: estimate(hvp, mask) on any HessianVectorProduct (checked on hessian::ExplicitHvp as the archetype).
template <class T>
concept TracePolicy = hessian::TraceEstimator<T, hessian::ExplicitHvp>;

template <class T>
consteval bool check_trace_policy() {
    static_assert(TracePolicy<T>,
                  "a trace policy needs a member `template <HessianVectorProduct H> hessian::TraceEstimate "
                  "estimate(H& hvp, std::span<const float> mask) const` (e.g. hessian::Hutchinson<>)");
    return TracePolicy<T>;
}
template <class L>
consteval bool check_loss_policy() {
    static_assert(LossPolicy<L>, "a LossPolicy needs a member `float perturbed_weight() const` (b in [0, 1])");
    return LossPolicy<L>;
}

// Stream tags: each random use gets its own family of streams.
inline constexpr std::uint64_t noise_stream = 1;
inline constexpr std::uint64_t lora_stream = 2;

inline bool all_finite(std::span<const float> values) {
    for (const float v : values)
        if (!(v - v == 0.0f)) return false;
    return true;
}

}  // namespace detail

/// True when the policies compose into a Pipeline (each check below names what is missing when it fails).
template <class S, class N, class T, class Q, class O, class L>
concept PipelinePolicies = outliers::OutlierSelector<S> && noise::NoiseSchedule<N> && detail::TracePolicy<T> &&
                           detail::QuantizerOrGrid<Q> && Optimizer<O> && LossPolicy<L>;

/// The NPFT pipeline around a user's model.
///   Selector  : outliers::OutlierSelector  (which weights get noise), e.g. outliers::TopFisher
///   Noise     : noise::NoiseSchedule       (the noise on them and when it is redrawn)
///   Trace     : hessian::TraceEstimator    (the outliers' Hessian trace for the progress log)
///   Quantizer : quant::Grid or quant::Quantizer<Grid> (steps for noise and selection; the final quantization)
///   Opt       : Optimizer (AdamW by default), Loss : LossPolicy (Perturbed by default)
template <class Selector, class Noise, class Trace, class QuantizerOrGrid, class Opt = AdamW, class Loss = Perturbed>
class Pipeline {
    // Checked one requirement at a time, so a wrong policy fails with a sentence naming the missing member.
    static_assert(outliers::check_outlier_selector<Selector>());
    static_assert(noise::check_noise_schedule<Noise>());
    static_assert(detail::check_trace_policy<Trace>());
    static_assert(detail::check_quantizer_or_grid<QuantizerOrGrid>());
    static_assert(detail::check_optimizer<Opt>());
    static_assert(detail::check_loss_policy<Loss>());

public:
    using selector_type = Selector;
    using noise_type = Noise;
    using trace_type = Trace;
    using quantizer_type = typename detail::quantizer_of<QuantizerOrGrid>::type;
    using optimizer_type = Opt;
    using loss_type = Loss;

    /// Every policy object by name, for the constructor below: `Pipe(options, {.noise = ..., .loss = Balanced{0.5f}})`
    /// sets the ones you name and defaults the rest (designated initializers, in this order).
    struct Policies {
        Selector selector{};
        Noise noise{};
        Trace trace{};
        quantizer_type quantizer{};
        Opt optimizer{};
        Loss loss{};
    };

    /// Options and the named policies (any subset, in declaration order).
    Pipeline(PipelineOptions options, Policies policies)
        : Pipeline(std::move(options), std::move(policies.selector), std::move(policies.noise), std::move(policies.trace),
                   std::move(policies.quantizer), std::move(policies.optimizer), std::move(policies.loss)) {}

    explicit Pipeline(PipelineOptions options = {}, Selector selector = {}, Noise noise = {}, Trace trace = {},
                      quantizer_type quantizer = {}, Opt optimizer = {}, Loss loss = {})
        : options_(std::move(options)),
          selector_(std::move(selector)),
          noise_(std::move(noise)),
          trace_(std::move(trace)),
          quantizer_(std::move(quantizer)),
          optimizer_(std::move(optimizer)),
          loss_(std::move(loss)) {
        validate_options();
    }

    const PipelineOptions& options() const { return options_; }
    index total_steps() const { return options_.stages * options_.steps_per_stage; }
    /// Global steps completed (by fit, or restored by resume).
    index steps_done() const { return step_; }
    /// Noise draws made so far (the draw number keys the noise stream).
    std::uint64_t draws() const { return draw_; }

    /// Names of the tensors the pipeline manages (perturbed or adapted), in the model's parameter order.
    std::vector<std::string> tensor_names() const {
        std::vector<std::string> names;
        for (const auto& t : tensors_) names.push_back(t.name);
        return names;
    }
    /// The current outlier selection of a perturbed tensor.
    const outliers::OutlierMask& selection(const std::string& name) const { return find(name).selection; }
    /// Every perturbed tensor's current outliers, by name (e.g. for train::outlier_attribution).
    std::map<std::string, outliers::OutlierMask> selections() const {
        std::map<std::string, outliers::OutlierMask> out;
        for (const auto& t : tensors_)
            if (t.perturbed) out.emplace(t.name, t.selection);
        return out;
    }
    /// The clean weights of a managed tensor, never with noise: with AdapterAcrossStages::restart the adapters are merged
    /// in at every stage end; with continue_training they stay W0 until the merge after the last stage.
    const Matrix& clean_weights(const std::string& name) const { return find(name).clean; }
    /// The LoRA adapter of an adapted tensor (LoRA mode only).
    const LoraAdapter& adapter(const std::string& name) const {
        const auto& t = find(name);
        require(t.adapted && uses_lora(), "tensor '", name, "' has no LoRA adapter");
        return t.lora;
    }

    /// Runs every stage from scratch. `batches` is a random-access range of Batch (step k uses batch k mod size);
    /// `calibration` feeds the Fisher pass and the trace estimate; `progress` is called after every step with a Report
    /// and may return Control::stop. After a complete run the model's values hold the merged clean weights.
    template <class Model, std::ranges::random_access_range Batches, std::ranges::random_access_range Calibration,
              std::invocable<const Report&> Progress = decltype(progress::quiet())>
    FitSummary fit(Model& model, const Batches& batches, const Calibration& calibration, Progress&& report = progress::quiet()) {
        check_model<Model, Batches, Calibration>();
        bind(model);
        step_ = 0;
        draw_ = 0;
        noise_scale_ = 0.0f;
        return run(model, batches, calibration, report);
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
        check_model<Model, Batches, Calibration>();
        bind(model);
        load_checkpoint(checkpoint);
        copy_clean_into_model();
        return run(model, batches, calibration, report);
    }

    /// Runs the Fisher pass over `calibration` on the model's current values and selects the outliers of every perturbed
    /// tensor (fit does this at every stage start; call it directly to measure the trace before training).
    template <class Model, std::ranges::random_access_range Calibration>
    void select(Model& model, const Calibration& calibration) {
        using Batch = std::ranges::range_value_t<Calibration>;
        static_assert(DifferentiableModel<Model, Batch>,
                      "the model must satisfy npft::train::DifferentiableModel<Model, Batch> (parameters() and "
                      "loss_and_gradient(batch))");
        if (tensors_.empty() || bound_model_ != static_cast<const void*>(&model)) bind(model);
        for (auto& t : tensors_) t.clean = to_eigen(MatrixView<const float>(parameters_[t.parameter].value));
        select_outliers(model, calibration);
    }

    /// Hutchinson estimate of the Hessian trace restricted to the current outliers (all perturbed tensors together), on
    /// the model's current values and one batch. The model's values are left as they were.
    template <class Model, class Batch>
    hessian::TraceEstimate outlier_trace(Model& model, const Batch& batch) {
        static_assert(DifferentiableModel<Model, Batch>,
                      "the model must satisfy npft::train::DifferentiableModel<Model, Batch>");
        require(!tensors_.empty() && bound_model_ == static_cast<const void*>(&model),
                "outlier_trace needs a selection on this model: call select(model, calibration) or fit() first");
        return estimate_trace(model, batch);
    }

    /// One QuantizedMatrix per perturbed tensor of the model's current values, by name.
    template <class Model>
    std::map<std::string, quant::QuantizedMatrix> quantize(Model& model) const {
        std::map<std::string, quant::QuantizedMatrix> out;
        for (const Parameter& p : model.parameters()) {
            if (!is_perturbed(p)) continue;
            try {
                out.emplace(p.name, quantizer_.quantize(MatrixView<const float>(p.value)));
            } catch (const Error& e) {
                fail("quantize: tensor '", p.name, "' (", p.value.rows(), " x ", p.value.cols(), "): ", e.what());
            }
        }
        require(!out.empty(), "quantize: no parameter of the model matches the perturbed patterns ",
                options_.perturbed.describe());
        return out;
    }

    /// Writes the whole training state (clean weights, selection, current noise, adapters, optimizer state, step and
    /// draw counters) to `path`.
    void save_checkpoint(const std::string& path) const {
        require(!tensors_.empty(), "save_checkpoint: nothing to save before fit() has bound a model");
        CheckpointWriter w;
        w.string("npft.pipeline");
        w.i64(options_.stages);
        w.i64(options_.steps_per_stage);
        w.u64(options_.seed);
        w.u64(checkpoint_mode());
        w.i64(step_);
        w.u64(draw_);
        w.f32(noise_scale_);
        w.u64(tensors_.size());
        for (const auto& t : tensors_) {
            w.string(t.name);
            w.i64(t.clean.rows());
            w.i64(t.clean.cols());
            w.floats(std::span<const float>(t.clean.data(), static_cast<std::size_t>(t.clean.size())));
            w.indices(t.selection.positions);
            w.i64(t.quant_steps.size());
            w.floats(std::span<const float>(t.quant_steps.data(), static_cast<std::size_t>(t.quant_steps.size())));
            w.floats(t.noise);
            if (t.adapted && uses_lora()) {
                w.floats(std::span<const float>(t.lora.a().data(), static_cast<std::size_t>(t.lora.a().size())));
                w.floats(std::span<const float>(t.lora.b().data(), static_cast<std::size_t>(t.lora.b().size())));
                save_state(w, t.state_a);
                save_state(w, t.state_b);
            } else if (t.adapted) {
                w.indices(t.trainable);
                save_state(w, t.state_masked);
            }
        }
        w.save(path);
    }

private:
    struct TensorState {
        std::string name;
        index parameter = 0;  // position in model.parameters(); also the tensor's id in random streams
        bool perturbed = false;
        bool adapted = false;
        Matrix clean;                     // W0: merged clean weights, never holds noise
        outliers::OutlierMask selection;  // outliers of `clean` (perturbed tensors)
        Matrix quant_steps;               // per-weight steps, when the selector or the noise reads them
        std::vector<float> noise;         // the current draw: noise[i] belongs to selection.positions[i]
        LoraAdapter lora;
        bool activation_lora = false;     // LoRA applied by the model on activations (dropout > 0), not in `value`
        ActivationLora activation;        // what the model calls then; reads `lora`
        typename Opt::State state_a, state_b;
        std::vector<index> trainable;     // MaskedWeights: sorted flat positions that train
        typename Opt::State state_masked;
        Matrix grad_a, grad_b;            // PEFT gradients of the current step (LoRA)
        std::vector<float> grad_masked;   // PEFT gradients of the current step (MaskedWeights)
        std::vector<float> gathered;      // MaskedWeights: the trainable values, gathered for the optimizer
    };

    bool uses_lora() const { return std::holds_alternative<LoraOptions>(options_.peft); }

    /// Runs f(t) for every managed tensor, spread over PipelineOptions::threads threads of the worker pool. Each
    /// tensor's work is done by one thread with the same arithmetic, so the results do not depend on the thread count.
    template <class F>
    void each_tensor(F&& f) {
        kernels::cpu::parallel_rows(static_cast<index>(tensors_.size()), options_.threads, 1, [&](index begin, index end) {
            for (index i = begin; i < end; ++i) f(tensors_[static_cast<std::size_t>(i)]);
        });
    }
    template <class F>
    void each_tensor(F&& f) const {
        kernels::cpu::parallel_rows(static_cast<index>(tensors_.size()), options_.threads, 1, [&](index begin, index end) {
            for (index i = begin; i < end; ++i) f(tensors_[static_cast<std::size_t>(i)]);
        });
    }
    bool is_perturbed(const Parameter& p) const {
        const bool matrix = p.value.rows() > 1 && p.value.cols() > 1;
        return options_.perturbed.matches(p.name) && (matrix || options_.perturb_vectors);
    }
    /// Fails, naming the tensor, when the quantizer cannot quantize a perturbed tensor (say, a group size that does not
    /// divide its columns): found when fit starts rather than in quantize() after the whole fine-tuning.
    void require_fits_grid(const TensorState& t) const {
        try {
            (void)quantizer_.grid().group_size(t.clean.cols());
        } catch (const Error& e) {
            fail("perturbed tensor '", t.name, "' (", t.clean.rows(), " x ", t.clean.cols(), ") does not fit the quantizer: ",
                 e.what(), "; leave it out of PipelineOptions::perturbed or choose another group size");
        }
    }
    bool continues_adapter() const {
        return uses_lora() && options_.adapter_across_stages == AdapterAcrossStages::continue_training;
    }
    std::uint64_t checkpoint_mode() const { return !uses_lora() ? 1 : continues_adapter() ? 2 : 0; }

    const TensorState& find(const std::string& name) const {
        for (const auto& t : tensors_)
            if (t.name == name) return t;
        fail("the pipeline manages no tensor named '", name, "'");
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

    void validate_options() const {
        const auto& o = options_;
        require(o.stages >= 1, "PipelineOptions::stages must be at least 1, got ", o.stages);
        require(o.steps_per_stage >= 1, "PipelineOptions::steps_per_stage must be at least 1, got ", o.steps_per_stage);
        require(std::isfinite(o.learning_rate) && o.learning_rate >= 0.0f,
                "PipelineOptions::learning_rate must be finite and non-negative, got ", o.learning_rate);
        require(o.stage_learning_rates.empty() || static_cast<index>(o.stage_learning_rates.size()) == o.stages,
                "PipelineOptions::stage_learning_rates must be empty or hold one rate per stage (", o.stages, "), got ",
                o.stage_learning_rates.size());
        for (const float lr : o.stage_learning_rates)
            require(std::isfinite(lr) && lr >= 0.0f, "PipelineOptions::stage_learning_rates holds ", lr,
                    ", expected finite non-negative rates");
        require(o.warmup_fraction >= 0.0f && o.warmup_fraction < 1.0f,
                "PipelineOptions::warmup_fraction must be in [0, 1), got ", o.warmup_fraction);
        require(o.threads >= 1, "PipelineOptions::threads must be at least 1, got ", o.threads);
        require(o.trace_every >= 0, "PipelineOptions::trace_every must be non-negative, got ", o.trace_every);
        require(o.checkpoint_every >= 0, "PipelineOptions::checkpoint_every must be non-negative, got ", o.checkpoint_every);
        require(o.checkpoint_every == 0 || !o.checkpoint_path.empty(),
                "PipelineOptions::checkpoint_every is ", o.checkpoint_every, " but checkpoint_path is empty");
        if (uses_lora()) (void)LoraAdapter(1, 1, std::get<LoraOptions>(o.peft));  // rank and alpha checks
        require(uses_lora() || o.adapter_across_stages == AdapterAcrossStages::restart,
                "PipelineOptions::adapter_across_stages = continue_training needs LoRA (peft = LoraOptions{...}); masked "
                "weights train the clean weights themselves");
        (void)loss_.perturbed_weight();                                           // range check
    }

    // ---- binding the model ------------------------------------------------------------------------------------------
    template <class Model>
    void bind(Model& model) {
        parameters_ = model.parameters();
        bound_model_ = &model;
        require(!parameters_.empty(), "the model has no parameters: model.parameters() returned an empty list");
        std::string all_names;
        for (std::size_t i = 0; i < parameters_.size(); ++i) {
            const Parameter& p = parameters_[i];
            all_names += (i ? ", " : "") + p.name;
            require_non_empty(MatrixView<const float>(p.value), ("value of parameter '" + p.name + "'").c_str());
            require_shape(p.grad, p.value.rows(), p.value.cols(), ("grad of parameter '" + p.name + "'").c_str());
            for (std::size_t j = 0; j < i; ++j)
                require(parameters_[j].name != p.name, "two parameters share the name '", p.name, "'");
        }
        tensors_.clear();
        bool any_perturbed = false, any_adapted = false;
        for (std::size_t i = 0; i < parameters_.size(); ++i) {
            const Parameter& p = parameters_[i];
            const bool perturbed = is_perturbed(p);
            const bool adapted = options_.adapted.matches(p.name);
            if (!perturbed && !adapted) continue;
            TensorState t;
            t.name = p.name;
            t.parameter = static_cast<index>(i);
            t.perturbed = perturbed;
            t.adapted = adapted;
            t.clean = to_eigen(MatrixView<const float>(p.value));
            t.selection = outliers::OutlierMask(p.value.rows(), p.value.cols(), {});
            // A zero pair of the right shape until the first stage initializes it (the Fisher pass may run through an
            // attached activation adapter before that).
            if (adapted && uses_lora()) t.lora = LoraAdapter(p.value.rows(), p.value.cols(), std::get<LoraOptions>(options_.peft));
            tensors_.push_back(std::move(t));
            any_perturbed |= perturbed;
            any_adapted |= adapted;
        }
        require(any_perturbed, "no parameter matches the perturbed patterns ", options_.perturbed.describe(),
                options_.perturb_vectors ? "" : " among the weight matrices (parameters with one row or column are left out "
                                                "unless PipelineOptions::perturb_vectors is set)",
                "; the model's parameters are: ", all_names);
        for (const auto& t : tensors_)
            if (t.perturbed) require_fits_grid(t);
        require(any_adapted, "no parameter matches the adapted patterns ", options_.adapted.describe(),
                " (nothing would train); the model's parameters are: ", all_names);
        if (!uses_lora()) {
            for (const auto& entry : std::get<MaskedWeights>(options_.peft).masks) {
                // Not a structured binding: clang before 16 cannot capture one in the lambda below.
                const auto& name = entry.first;
                const auto& mask = entry.second;
                const auto it = std::find_if(tensors_.begin(), tensors_.end(),
                                             [&](const TensorState& t) { return t.name == name && t.adapted; });
                require(it != tensors_.end(), "MaskedWeights has a mask for '", name,
                        "', which is not an adapted parameter of the model");
                require(mask.rows == it->clean.rows() && mask.cols == it->clean.cols(), "MaskedWeights mask for '", name,
                        "' is ", mask.rows, " x ", mask.cols, ", but the tensor is ", it->clean.rows(), " x ",
                        it->clean.cols());
            }
        }
    }

    MatrixView<float> value_of(const TensorState& t) const { return parameters_[static_cast<std::size_t>(t.parameter)].value; }
    MatrixView<const float> grad_of(const TensorState& t) const { return parameters_[static_cast<std::size_t>(t.parameter)].grad; }
    static MatrixView<const float> view_of(const Matrix& m) {
        return m.size() == 0 ? MatrixView<const float>() : MatrixView<const float>::dense(m.data(), m.rows(), m.cols());
    }

    // ---- writing weights into the model -----------------------------------------------------------------------------
    void copy_clean_into_model() const {
        for (const auto& t : tensors_) to_eigen(value_of(t)) = t.clean;
    }

    /// The model's values := clean + adapters (+ the current noise on the outliers). Outside the outliers and the
    /// trainable positions the values of a tensor without LoRA already equal `clean` (copied at each stage start), so
    /// only those positions are written; restoring after a draw is a copy of the saved clean values, never a subtraction.
    void write_effective(bool with_noise) const {
        each_tensor([&](const TensorState& t) {
            const MatrixView<float> v = value_of(t);
            const index cols = t.clean.cols();
            if (t.adapted && uses_lora()) {
                if (t.activation_lora) {
                    to_eigen(v) = t.clean;  // the model adds the adapter term to its activations
                } else {
                    t.lora.write_effective(t.clean, v);
                }
                if (with_noise) {
                    for (std::size_t i = 0; i < t.noise.size(); ++i) {
                        const index p = t.selection.positions[i];
                        v(p / cols, p % cols) += t.noise[i];
                    }
                }
                return;
            }
            for (const index q : t.trainable) v(q / cols, q % cols) = t.clean.data()[q];
            for (std::size_t i = 0; i < t.selection.positions.size(); ++i) {
                const index p = t.selection.positions[i];
                const float w = t.clean.data()[p];
                v(p / cols, p % cols) = (with_noise && i < t.noise.size()) ? w + t.noise[i] : w;
            }
        });
    }

    // ---- selection --------------------------------------------------------------------------------------------------
    /// The weights selection and quantization steps are computed on: the clean weights, or with a continuing adapter
    /// the merged W0 + (alpha/r) B A (the same arithmetic as the values written into the model).
    Matrix selection_basis(const TensorState& t) const {
        if (!(continues_adapter() && t.adapted)) return t.clean;
        Matrix merged(t.clean.rows(), t.clean.cols());
        t.lora.write_effective(t.clean, as_matrix_view(merged));
        return merged;
    }

    template <class Model, class Calibration>
    void select_outliers(Model& model, const Calibration& calibration) {
        constexpr bool needs_fisher = Selector::needs_fisher;
        constexpr bool needs_steps = Selector::needs_quant_steps || Noise::needs_quant_steps;
        std::map<std::string, Matrix> fisher;
        if constexpr (needs_fisher) {
            require(std::ranges::size(calibration) > 0,
                    "the selector needs the diagonal Fisher, but no calibration batches were given");
            std::vector<std::string> names;
            for (const auto& t : tensors_)
                if (t.perturbed) names.push_back(t.name);
            using CalibrationBatch = std::ranges::range_value_t<Calibration>;
            if constexpr (SequenceSplittingModel<Model, CalibrationBatch>) {
                // Mean of squared per-sequence gradients, however the calibration data is batched.
                std::vector<CalibrationBatch> sequences;
                for (const auto& batch : calibration) {
                    std::vector<CalibrationBatch> parts = model.split_sequences(batch);
                    require(!parts.empty(), "the model's split_sequences returned no sequence for a calibration batch");
                    for (auto& part : parts) sequences.push_back(std::move(part));
                }
                fisher = hessian::DiagonalFisher::compute(model, sequences, std::move(names));
            } else {
                fisher = hessian::DiagonalFisher::compute(model, calibration, std::move(names));
            }
        }
        for (auto& t : tensors_) {
            if (!t.perturbed) continue;
            const Matrix basis = selection_basis(t);
            if constexpr (needs_steps) {
                t.quant_steps = quant::quantization_steps(quantizer_.grid(), view_of(basis));
            }
            outliers::SelectionInputs in{view_of(basis), needs_fisher ? view_of(fisher.at(t.name)) : MatrixView<const float>(),
                                         Selector::needs_quant_steps ? view_of(t.quant_steps) : MatrixView<const float>()};
            outliers::OutlierMask mask = selector_.select(in);
            require(mask.rows == t.clean.rows() && mask.cols == t.clean.cols(), "the selector returned a ", mask.rows,
                    " x ", mask.cols, " mask for tensor '", t.name, "', which is ", t.clean.rows(), " x ", t.clean.cols());
            t.selection = std::move(mask);
            t.noise.clear();
        }
    }

    // ---- stage boundaries -------------------------------------------------------------------------------------------
    template <class Model, class Calibration>
    void begin_stage(Model& model, const Calibration& calibration, index stage) {
        copy_clean_into_model();
        if (continues_adapter()) write_effective(false);  // the Fisher pass sees the merged W0 + (alpha/r) B A, no noise
        if (stage == 0 || options_.refresh_selection) {
            select_outliers(model, calibration);
        } else if constexpr (Noise::needs_quant_steps) {
            for (auto& t : tensors_)
                if (t.perturbed) t.quant_steps = quant::quantization_steps(quantizer_.grid(), view_of(selection_basis(t)));
        }
        const bool new_adapters = stage == 0 || !continues_adapter();
        for (auto& t : tensors_) {
            if (!t.adapted) continue;
            if (uses_lora() && !new_adapters) {
                // The reference trains the same adapter on; a new trainer per stage means a fresh optimizer state.
                t.state_a = optimizer_.make_state(t.lora.a().size());
                t.state_b = optimizer_.make_state(t.lora.b().size());
            } else if (uses_lora()) {
                t.lora = LoraAdapter(t.clean.rows(), t.clean.cols(), std::get<LoraOptions>(options_.peft));
                t.lora.initialize(RandomKey{options_.seed, make_stream(static_cast<std::uint64_t>(stage),
                                                                       static_cast<std::uint64_t>(t.parameter),
                                                                       detail::lora_stream)});
                t.state_a = optimizer_.make_state(t.lora.a().size());
                t.state_b = optimizer_.make_state(t.lora.b().size());
            } else {
                t.trainable = trainable_positions(t);
                t.state_masked = optimizer_.make_state(static_cast<index>(t.trainable.size()));
            }
        }
    }

    std::vector<index> trainable_positions(const TensorState& t) const {
        const auto& masks = std::get<MaskedWeights>(options_.peft).masks;
        if (const auto it = masks.find(t.name); it != masks.end()) return it->second.positions;
        std::vector<index> out;
        out.reserve(static_cast<std::size_t>(t.clean.size() - t.selection.count()));
        auto next = t.selection.positions.begin();
        for (index p = 0; p < t.clean.size(); ++p) {
            if (next != t.selection.positions.end() && *next == p) {
                ++next;
                continue;
            }
            out.push_back(p);
        }
        return out;
    }

    void end_stage(index stage) {
        if (continues_adapter() && stage + 1 < options_.stages) return;  // merged once, after the last stage
        each_tensor([&](TensorState& t) {
            if (t.adapted && uses_lora()) {
                t.lora.merge_into(t.clean);
                t.lora.b().setZero();  // the merged update now lives in `clean`; W_eff = clean until the next stage
            }
        });
    }

    // ---- noise ------------------------------------------------------------------------------------------------------
    void draw_noise(index step) {
        ++draw_;
        noise_scale_ = static_cast<float>(noise_.scale(step, total_steps()));
        each_tensor([&](TensorState& t) {
            if (!t.perturbed) return;
            t.noise.assign(t.selection.positions.size(), 0.0f);
            if (t.noise.empty()) return;
            noise::NoiseRequest request{&t.selection, view_of(t.clean), view_of(t.quant_steps), noise_scale_,
                                        RandomKey{options_.seed, make_stream(draw_, static_cast<std::uint64_t>(t.parameter),
                                                                             detail::noise_stream)}};
            noise_.draw(request, std::span<float>(t.noise));
        });
    }

    // ---- one training step ------------------------------------------------------------------------------------------
    float learning_rate_at(index stage, index local) const {
        const float peak = options_.stage_learning_rates.empty() ? options_.learning_rate
                                                                 : options_.stage_learning_rates[static_cast<std::size_t>(stage)];
        const index n = options_.steps_per_stage;
        const auto warmup = static_cast<index>(std::llround(static_cast<double>(options_.warmup_fraction) * static_cast<double>(n)));
        // The Hugging Face linear schedule: ramp over the warmup steps, then decay linearly to zero at the stage end.
        if (local < warmup) return peak * static_cast<float>(local) / static_cast<float>(warmup);
        return peak * static_cast<float>(n - local) / static_cast<float>(n - warmup);
    }

    /// PEFT gradients from the model's current grads, times `weight`; added to the previous call's when `accumulate`.
    void collect_peft_gradients(float weight, bool accumulate) {
        each_tensor([&](TensorState& t) {
            if (!t.adapted) return;
            if (uses_lora() && t.activation_lora) {
                const ActivationLora& a = t.activation;
                require(a.forward_calls() > 0 && a.backward_calls() > 0, "the model took the activation LoRA adapter of '",
                        t.name, "' but its loss_and_gradient called forward ", a.forward_calls(), " and backward ",
                        a.backward_calls(), " times on it (each must be called at least once per call)");
                if (accumulate) {
                    t.grad_a += weight * a.grad_a();
                    t.grad_b += weight * a.grad_b();
                } else {
                    t.grad_a = weight * a.grad_a();
                    t.grad_b = weight * a.grad_b();
                }
            } else if (uses_lora()) {
                if (accumulate) {
                    Matrix ga, gb;
                    t.lora.gradients(grad_of(t), ga, gb);
                    t.grad_a += weight * ga;
                    t.grad_b += weight * gb;
                } else {
                    t.lora.gradients(grad_of(t), t.grad_a, t.grad_b);
                    if (weight != 1.0f) {
                        t.grad_a *= weight;
                        t.grad_b *= weight;
                    }
                }
            } else {
                const MatrixView<const float> g = grad_of(t);
                const index cols = t.clean.cols();
                t.grad_masked.resize(t.trainable.size());
                for (std::size_t j = 0; j < t.trainable.size(); ++j) {
                    const index q = t.trainable[j];
                    const float v = weight * g(q / cols, q % cols);
                    t.grad_masked[j] = accumulate ? t.grad_masked[j] + v : v;
                }
            }
        });
    }

    void require_finite_step(double loss, index step) const {
        std::string where;
        for (const auto& t : tensors_) {
            if (!t.adapted || !where.empty()) continue;
            const bool finite = uses_lora() ? (t.grad_a.allFinite() && t.grad_b.allFinite()) : detail::all_finite(t.grad_masked);
            if (!finite) where = t.name;
        }
        require(std::isfinite(loss) && where.empty(), "training diverged at step ", step + 1, " of ", total_steps(),
                ": the loss is ", loss,
                where.empty() ? std::string("; all adapter gradients are finite")
                              : "; the first non-finite gradient is in tensor '" + where + "'");
    }

    void optimizer_step(float lr) {
        each_tensor([&](TensorState& t) {
            if (!t.adapted) return;
            if (uses_lora()) {
                optimizer_.step(t.state_a, std::span<float>(t.lora.a().data(), static_cast<std::size_t>(t.lora.a().size())),
                                std::span<const float>(t.grad_a.data(), static_cast<std::size_t>(t.grad_a.size())), lr);
                optimizer_.step(t.state_b, std::span<float>(t.lora.b().data(), static_cast<std::size_t>(t.lora.b().size())),
                                std::span<const float>(t.grad_b.data(), static_cast<std::size_t>(t.grad_b.size())), lr);
            } else {
                t.gathered.resize(t.trainable.size());
                for (std::size_t j = 0; j < t.trainable.size(); ++j) t.gathered[j] = t.clean.data()[t.trainable[j]];
                optimizer_.step(t.state_masked, std::span<float>(t.gathered), std::span<const float>(t.grad_masked), lr);
                for (std::size_t j = 0; j < t.trainable.size(); ++j) t.clean.data()[t.trainable[j]] = t.gathered[j];
            }
        });
    }

    template <class Model, class Batches, class Calibration, class Progress>
    FitSummary run(Model& model, const Batches& batches, const Calibration& calibration, Progress& report) {
        const auto batch_count = static_cast<index>(std::ranges::size(batches));
        require(batch_count > 0, "fit needs at least one training batch, got an empty range");
        require(options_.trace_every == 0 || std::ranges::size(calibration) > 0,
                "PipelineOptions::trace_every is set but there are no calibration batches to estimate the trace on");
        const float b = loss_.perturbed_weight();
        FitSummary summary;
        const index n = options_.steps_per_stage;
        // Activation-space LoRA (dropout > 0): hand the adapters to the model for this run, take them back on any exit.
        struct Detach {
            Pipeline* pipeline;
            Model* model;
            ~Detach() { pipeline->detach_adapters(*model); }
        } detach{this, &model};
        attach_adapters(model);
        while (step_ < total_steps()) {
            const index stage = step_ / n, local = step_ % n;
            const bool stage_start = local == 0;
            prepare_adapters(false);  // Fisher pass and trace: no dropout
            if (stage_start) begin_stage(model, calibration, stage);
            if (stage_start) draws_in_stage_ = 0;
            if (stage_start || noise_.redraw_at(step_, n)) {
                draw_noise(step_);
                ++draws_in_stage_;
            }

            const auto& batch = std::ranges::begin(batches)[step_ % batch_count];
            double loss = 0.0;
            if (b < 1.0f) {
                write_effective(false);
                prepare_adapters(true);
                const double clean_loss = static_cast<double>(model.loss_and_gradient(batch));
                collect_peft_gradients(1.0f - b, false);
                write_effective(true);
                prepare_adapters(true);  // the same dropout mask as the clean pass: it is keyed by the step
                const double perturbed_loss = static_cast<double>(model.loss_and_gradient(batch));
                collect_peft_gradients(b, true);
                loss = (1.0 - static_cast<double>(b)) * clean_loss + static_cast<double>(b) * perturbed_loss;
            } else {
                write_effective(true);
                prepare_adapters(true);
                loss = static_cast<double>(model.loss_and_gradient(batch));
                collect_peft_gradients(1.0f, false);
            }
            require_finite_step(loss, step_);
            const float lr = learning_rate_at(stage, local);
            optimizer_step(lr);
            ++step_;

            Report r;
            r.step = step_;
            r.total_steps = total_steps();
            r.stage = stage;
            r.loss = loss;
            r.noise_scale = noise_scale_;
            r.learning_rate = lr;
            if (options_.trace_every > 0 && step_ % options_.trace_every == 0) {
                prepare_adapters(false);
                write_effective(false);
                const auto estimate = estimate_trace(model, std::ranges::begin(calibration)[0]);
                r.trace = estimate.value;
                r.trace_standard_error = estimate.standard_error;
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
                detach_adapters(model);  // the model is left with LoRA in its weights, as without the capability
                write_effective(false);  // leave a usable model: clean + adapters, no noise
                return summary;
            }
        }
        copy_clean_into_model();
        summary.finished = true;
        return summary;
    }

    /// The failure mode of one draw kept for a whole stage at a high learning rate: the adapter learns -noise, so the
    /// model is good only with that draw in it. Detected by the loss on the stage's last batch with and without the
    /// draw (adapters as they are now, no dropout); a warning (empty when fine) names both losses.
    template <class Model, class Batch>
    std::string check_draw_cancellation(Model& model, const Batch& batch, index stage) {
        bool any_noise = false;
        for (const auto& t : tensors_)
            for (const float d : t.noise) any_noise |= d != 0.0f;
        if (!any_noise) return {};
        prepare_adapters(false);
        write_effective(true);
        const double with_draw = static_cast<double>(model.loss_and_gradient(batch));
        write_effective(false);
        const double without_draw = static_cast<double>(model.loss_and_gradient(batch));
        if (!(without_draw > with_draw)) return {};
        return "stage " + std::to_string(stage + 1) + ": the loss without the stage's noise draw (" +
               std::to_string(without_draw) + ") is higher than with it (" + std::to_string(with_draw) +
               "): the adapter has learned to cancel the one fixed draw. Redraw more often (e.g. noise::EveryStep, "
               "presets::quantization_step()) or lower the learning rate";
    }

    // ---- activation-space LoRA (LoraActivationModel, dropout > 0) ----------------------------------------------------
    template <class Model>
    void attach_adapters(Model& model) {
        if (!uses_lora()) return;
        const float dropout = std::get<LoraOptions>(options_.peft).dropout;
        if (dropout == 0.0f) return;  // weight space is exact without dropout and needs nothing from the model
        if constexpr (LoraActivationModel<Model>) {
            for (auto& t : tensors_) {
                if (!t.adapted) continue;
                t.activation = ActivationLora(t.lora, dropout);
                t.activation_lora = true;
                model.set_lora_adapter(t.name, &t.activation);
            }
        } else {
            fail("LoraOptions::dropout is ", dropout,
                 ", but LoRA dropout acts per token on activations and this model does not apply adapters itself: give it "
                 "`set_lora_adapter(const std::string& name, npft::train::ActivationLora* adapter)` and call "
                 "adapter->forward/backward in its forward/backward (npft::train::LoraActivationModel, docs/pipeline.md), "
                 "or set dropout = 0 for LoRA in weight space");
        }
    }

    template <class Model>
    void detach_adapters(Model& model) {
        if constexpr (LoraActivationModel<Model>) {
            for (auto& t : tensors_) {
                if (!t.activation_lora) continue;
                model.set_lora_adapter(t.name, nullptr);
                t.activation_lora = false;
            }
        } else {
            (void)model;
        }
    }

    /// Before a model call: training mode (dropout keyed by this step, gradients cleared) or evaluation (no dropout).
    void prepare_adapters(bool training) {
        for (auto& t : tensors_) {
            if (!t.activation_lora) continue;
            t.activation.set_training(training);
            t.activation.set_mask_key(options_.seed, static_cast<std::uint64_t>(step_), static_cast<std::uint64_t>(t.parameter));
            t.activation.zero_gradients();
        }
    }

    // ---- Hessian trace ----------------------------------------------------------------------------------------------
    template <class Model, class Batch>
    hessian::TraceEstimate estimate_trace(Model& model, const Batch& batch) {
        // The estimator sees the perturbed tensors as one flat vector (model order, each row-major); the outliers of all
        // of them form one 0/1 mask over it. The probes are the estimator's own (fixed seed), so estimates taken at
        // different steps use the same probes and their differences are not probe noise.
        std::vector<std::string> names;
        std::vector<float> mask;
        for (const auto& t : tensors_) {
            if (!t.perturbed) continue;
            names.push_back(t.name);
            const std::vector<float> indicator = t.selection.indicator();
            mask.insert(mask.end(), indicator.begin(), indicator.end());
        }
        hessian::FiniteDifferenceHvp<Model, Batch> hvp(model, batch, std::move(names));
        return trace_.estimate(hvp, std::span<const float>(mask));
    }

    // ---- checkpoints ------------------------------------------------------------------------------------------------
    static void save_state(CheckpointWriter& w, const typename Opt::State& state) {
        auto& s = const_cast<typename Opt::State&>(state);  // buffers() hands out mutable spans; we only read them
        w.i64(static_cast<std::int64_t>(s.steps));
        const auto buffers = s.buffers();
        w.u64(buffers.size());
        for (const auto& buffer : buffers) w.floats(buffer);
    }
    void load_state(CheckpointReader& r, typename Opt::State& state, index size, const std::string& name) const {
        state = optimizer_.make_state(size);
        state.steps = r.i64();
        auto buffers = state.buffers();
        const std::uint64_t count = r.u64();
        require(count == buffers.size(), "checkpoint '", r.path(), "': optimizer state of '", name, "' has ", count,
                " buffers, expected ", buffers.size());
        for (auto& buffer : buffers) r.floats_into(buffer, ("optimizer state of '" + name + "'").c_str());
    }

    void load_checkpoint(const std::string& path) {
        CheckpointReader r(path);
        require(r.string() == "npft.pipeline", "checkpoint '", path, "' was not written by npft::train::Pipeline");
        const auto stages = r.i64(), steps = r.i64();
        const auto seed = r.u64(), mode = r.u64();
        require(stages == options_.stages && steps == options_.steps_per_stage && seed == options_.seed &&
                    mode == checkpoint_mode(),
                "checkpoint '", path, "' was written with other options (stages ", stages, ", steps per stage ", steps,
                ", seed ", seed, ", ", mode == 0 ? "LoRA restarted per stage" : mode == 1 ? "masked weights" : "LoRA continued across stages", ")");
        step_ = r.i64();
        draw_ = r.u64();
        noise_scale_ = r.f32();
        require(step_ >= 0 && step_ <= total_steps(), "checkpoint '", path, "': step ", step_, " is outside [0, ",
                total_steps(), "]");
        const std::uint64_t count = r.u64();
        require(count == tensors_.size(), "checkpoint '", path, "' holds ", count, " tensors, the model has ",
                tensors_.size(), " managed tensors");
        for (auto& t : tensors_) {
            const std::string name = r.string();
            const auto rows = r.i64(), cols = r.i64();
            require(name == t.name && rows == t.clean.rows() && cols == t.clean.cols(), "checkpoint '", path, "' holds '",
                    name, "' (", rows, " x ", cols, ") where the model has '", t.name, "' (", t.clean.rows(), " x ",
                    t.clean.cols(), ")");
            r.floats_into(std::span<float>(t.clean.data(), static_cast<std::size_t>(t.clean.size())), "clean weights");
            t.selection = outliers::OutlierMask(rows, cols, r.indices());
            const auto step_count = r.i64();
            t.quant_steps = step_count == 0 ? Matrix() : Matrix(rows, cols);
            r.floats_into(std::span<float>(t.quant_steps.data(), static_cast<std::size_t>(t.quant_steps.size())),
                          "quantization steps");
            t.noise = r.floats();
            require(t.noise.empty() || t.noise.size() == t.selection.positions.size(), "checkpoint '", path, "': '", name,
                    "' has ", t.noise.size(), " noise values for ", t.selection.positions.size(), " outliers");
            if (t.adapted && uses_lora()) {
                t.lora = LoraAdapter(rows, cols, std::get<LoraOptions>(options_.peft));
                r.floats_into(std::span<float>(t.lora.a().data(), static_cast<std::size_t>(t.lora.a().size())), "LoRA A");
                r.floats_into(std::span<float>(t.lora.b().data(), static_cast<std::size_t>(t.lora.b().size())), "LoRA B");
                load_state(r, t.state_a, t.lora.a().size(), name);
                load_state(r, t.state_b, t.lora.b().size(), name);
            } else if (t.adapted) {
                t.trainable = r.indices();
                for (const index q : t.trainable)
                    require(q >= 0 && q < t.clean.size(), "checkpoint '", path, "': trainable position ", q, " of '", name,
                            "' is outside the tensor");
                load_state(r, t.state_masked, static_cast<index>(t.trainable.size()), name);
            }
        }
        require(r.at_end(), "checkpoint '", path, "' has trailing data after the last tensor");
    }

    PipelineOptions options_;
    Selector selector_;
    Noise noise_;
    Trace trace_;
    quantizer_type quantizer_;
    Opt optimizer_;
    Loss loss_;

    std::vector<Parameter> parameters_;
    const void* bound_model_ = nullptr;
    std::vector<TensorState> tensors_;
    index step_ = 0;
    std::uint64_t draw_ = 0;
    index draws_in_stage_ = 0;  // draws made since the current stage began (not checkpointed: only gates a warning)
    float noise_scale_ = 0.0f;
};

}  // namespace npft::train

namespace npft {
using train::Pipeline;
using train::PipelineOptions;
using train::AdapterAcrossStages;
}  // namespace npft
