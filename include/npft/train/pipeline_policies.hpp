#pragma once
// What the pipeline asks of each compile-time policy, checked one requirement at a time so that a wrong policy fails
// with a sentence naming the missing member, and the "none" policies for the ones a run may not need:
//   NoTrace     : no Hessian trace (PipelineOptions::trace_every must stay 0; outlier_trace() does not compile)
//   NoQuantizer : no grid, for noise and selectors that read no quantization steps (quantize() does not compile)
#include <concepts>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "../core/config.hpp"
#include "../hessian/hutchinson.hpp"
#include "../hessian/hvp.hpp"
#include "../noise/schedule.hpp"
#include "../outliers/selector.hpp"
#include "../quant/grid.hpp"
#include "../quant/quantizer.hpp"
#include "learning_rate.hpp"
#include "loss_policy.hpp"
#include "optimizer.hpp"

namespace npft::train {

namespace detail {
template <class>
inline constexpr bool always_false = false;
}  // namespace detail

/// The Trace policy of a pipeline that never estimates the outliers' Hessian trace. It satisfies the trace concept so
/// the pipeline composes without a Hutchinson estimator; asking it for an estimate is a compile error.
struct NoTrace {
    template <hessian::HessianVectorProduct H>
    hessian::TraceEstimate estimate(H&, std::span<const float>) const {
        static_assert(detail::always_false<H>,
                      "this pipeline's Trace policy is train::NoTrace: give it a trace estimator (e.g. "
                      "hessian::Hutchinson<>) to call outlier_trace()");
        return {};
    }
};

/// The quantizer policy of a pipeline whose selector and noise read no quantization steps and that is not asked to
/// quantize(): the final quantization is then done by the caller (e.g. with quant::Quantizer or GPTQ).
struct NoQuantizer {};

namespace detail {

template <class Q>
concept IsQuantizer = requires { typename Q::grid_type; } && quant::Grid<typename Q::grid_type> &&
                      std::same_as<Q, quant::Quantizer<typename Q::grid_type>>;

template <class Q>
struct quantizer_of {
    using type = quant::Quantizer<Q>;
};
template <class Q>
    requires IsQuantizer<Q> || std::same_as<Q, NoQuantizer>
struct quantizer_of<Q> {
    using type = Q;
};

/// A quantization policy: a Grid (wrapped in a round-to-nearest Quantizer), a Quantizer<Grid>, or NoQuantizer.
template <class Q>
concept QuantizerOrGrid = quant::Grid<Q> || IsQuantizer<Q> || std::same_as<Q, NoQuantizer>;

template <class Q>
consteval bool check_quantizer_or_grid() {
    static_assert(QuantizerOrGrid<Q>,
                  "the quantizer policy must be a quant::Grid (members bits(), format(), group_size(cols), "
                  "fit(values, importance)), a quant::Quantizer<Grid>, or train::NoQuantizer");
    return QuantizerOrGrid<Q>;
}
template <class O>
consteval bool check_optimizer() {
    static_assert(requires(const O& o, Index n) { o.make_state(n); },
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
                  "estimate(H& hvp, std::span<const float> mask) const` (e.g. hessian::Hutchinson<>, or train::NoTrace)");
    return TracePolicy<T>;
}
template <class L>
consteval bool check_loss_policy() {
    static_assert(LossPolicy<L>, "a LossPolicy needs a member `float perturbed_weight() const` (b in [0, 1])");
    return LossPolicy<L>;
}
template <class S>
consteval bool check_learning_rate_schedule() {
    static_assert(LearningRateSchedule<S>, "a learning-rate schedule needs a member `float rate(const PipelineOptions&, "
                                           "index stage, index step_in_stage) const`");
    return LearningRateSchedule<S>;
}
/// Selector and noise that read quantization steps need a grid to take them from.
template <class Selector, class Noise, class Q>
consteval bool check_steps_have_a_grid() {
    static_assert(!(Selector::needs_quant_steps || Noise::needs_quant_steps) || !std::same_as<Q, NoQuantizer>,
                  "the selector or the noise reads quantization steps (needs_quant_steps), so the pipeline needs a "
                  "quant::Grid or quant::Quantizer<Grid>, not train::NoQuantizer");
    return true;
}

}  // namespace detail

/// True when the policies compose into a Pipeline (each check above names what is missing when it fails).
template <class S, class N, class T, class Q, class O, class L, class R = LinearWarmupDecay>
concept PipelinePolicies = outliers::OutlierSelector<S> && noise::NoiseSchedule<N> && detail::TracePolicy<T> &&
                           detail::QuantizerOrGrid<Q> && Optimizer<O> && LossPolicy<L> && LearningRateSchedule<R>;

}  // namespace npft::train
