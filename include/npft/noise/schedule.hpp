#pragma once
// The NoiseSchedule concept (what the pipeline calls) and Schedule<Distribution, Scale, Redraw>, which composes one.
#include <concepts>
#include <span>
#include <type_traits>

#include "distribution.hpp"
#include "quant_step_noise.hpp"
#include "redraw.hpp"
#include "row_range_uniform.hpp"
#include "scale.hpp"

namespace npft::noise {

/// The noise policy of a pipeline.
///   N::needs_quant_steps                   : static constexpr bool, whether draw() reads request.quant_steps
///   n.scale(step, total_steps)             : noise scale s at this step
///   n.redraw_at(step, steps_per_epoch)     : whether a new draw starts at this step (always at step 0)
///   n.draw(request, out)                   : out[i] = noise for request.mask->positions[i], keyed by (key, position)
template <class N>
concept NoiseSchedule = requires(const N& n, Index step, Index total_steps, Index steps_per_epoch, const NoiseRequest& r,
                                 std::span<float> out) {
    { N::needs_quant_steps } -> std::convertible_to<bool>;
    typename std::bool_constant<N::needs_quant_steps>;
    { n.scale(step, total_steps) } -> std::convertible_to<float>;
    { n.redraw_at(step, steps_per_epoch) } -> std::convertible_to<bool>;
    n.draw(r, out);
};

/// static_assert(check_noise_schedule<N>()) names the missing member when N is not a NoiseSchedule.
template <class N>
consteval bool check_noise_schedule() {
    static_assert(requires { typename std::bool_constant<N::needs_quant_steps>; },
                  "a NoiseSchedule needs `static constexpr bool needs_quant_steps`");
    static_assert(requires(const N& n, Index s, Index t) {
        { n.scale(s, t) } -> std::convertible_to<float>;
    }, "a NoiseSchedule needs `float scale(index step, index total_steps) const`");
    static_assert(requires(const N& n, Index s, Index e) {
        { n.redraw_at(s, e) } -> std::convertible_to<bool>;
    }, "a NoiseSchedule needs `bool redraw_at(index step, index steps_per_epoch) const`");
    static_assert(requires(const N& n, const NoiseRequest& r, std::span<float> out) { n.draw(r, out); },
                  "a NoiseSchedule needs `void draw(const NoiseRequest&, std::span<float> out) const`");
    return NoiseSchedule<N>;
}

/// A NoiseSchedule from three independent choices: what noise, how large over training, how often redrawn.
///   Schedule<QuantStepUniform, LinearDecay, EveryStep>{.scaling = {1.0f, 0.25f}}
///   Schedule<RowRangeUniform, Constant, OncePerEpoch>{}          // the reference code
template <NoiseDistribution Distribution, ScaleSchedule Scale = Constant, RedrawRule Redraw = EveryStep>
struct Schedule {
    static constexpr bool needs_quant_steps = Distribution::needs_quant_steps;

    Distribution distribution{};
    Scale scaling{};
    Redraw redraw{};

    float scale(Index step, Index total_steps) const { return static_cast<float>(scaling.at(step, total_steps)); }
    bool redraw_at(Index step, Index steps_per_epoch) const {
        return static_cast<bool>(redraw.redraw_at(step, steps_per_epoch));
    }
    void draw(const NoiseRequest& request, std::span<float> out) const { distribution.draw(request, out); }
};

/// The reference code's schedule: per-row range noise at full scale, drawn once per epoch.
using ReferenceSchedule = Schedule<RowRangeUniform, Constant, OncePerEpoch>;

}  // namespace npft::noise
