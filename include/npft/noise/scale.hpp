#pragma once
// Noise scale schedules: the factor s of the noise at each training step.
#include <cmath>
#include <concepts>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace npft::noise {

/// s.at(step, total_steps) -> the noise scale at `step` (0-based) of a run of `total_steps` steps.
template <class S>
concept ScaleSchedule = requires(const S& s, Index step, Index total_steps) {
    { s.at(step, total_steps) } -> std::convertible_to<float>;
};

/// Training progress in [0, 1]: 0 at the first step, 1 at the last (step total_steps - 1), clamped beyond.
inline double progress(Index step, Index total_steps) {
    require(total_steps >= 1, "total_steps must be at least 1, got ", total_steps);
    require(step >= 0, "step must be non-negative, got ", step);
    if (total_steps == 1) return 0.0;
    const double t = static_cast<double>(step) / static_cast<double>(total_steps - 1);
    return t > 1.0 ? 1.0 : t;
}

/// s = value throughout.
struct Constant {
    float value = 1.0f;
    float at(Index step, Index total_steps) const {
        (void)progress(step, total_steps);  // same argument checks as the other schedules
        return value;
    }
};

/// s goes linearly from `start` at the first step to `end` at the last.
struct LinearDecay {
    float start = 1.0f;
    float end = 0.0f;
    float at(Index step, Index total_steps) const {
        const double t = progress(step, total_steps);
        return static_cast<float>(start + (static_cast<double>(end) - start) * t);
    }
};

/// s follows half a cosine from `start` at the first step to `end` at the last (flat at both ends).
struct CosineDecay {
    float start = 1.0f;
    float end = 0.0f;
    float at(Index step, Index total_steps) const {
        constexpr double pi = 3.141592653589793;
        const double t = progress(step, total_steps);
        return static_cast<float>(end + (static_cast<double>(start) - end) * 0.5 * (1.0 + std::cos(pi * t)));
    }
};

}  // namespace npft::noise
