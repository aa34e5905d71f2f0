#pragma once
// Redraw rules: at which steps a new noise draw starts (the previous one is removed first).
#include <concepts>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace npft::noise {

/// r.redraw_at(step, steps_per_epoch) -> whether a new draw starts at `step` (0-based). Must be true at step 0.
template <class R>
concept RedrawRule = requires(const R& r, Index step, Index steps_per_epoch) {
    { r.redraw_at(step, steps_per_epoch) } -> std::convertible_to<bool>;
};

/// A fresh draw every step: the gradient is then an unbiased estimate of the gradient of E_d[L(w + d)]. The default.
struct EveryStep {
    bool redraw_at(Index step, Index /*steps_per_epoch*/) const {
        require(step >= 0, "step must be non-negative, got ", step);
        return true;
    }
};

/// One draw per epoch, kept for all its steps: the reference code's behaviour.
struct OncePerEpoch {
    bool redraw_at(Index step, Index steps_per_epoch) const {
        require(step >= 0, "step must be non-negative, got ", step);
        require(steps_per_epoch >= 1, "steps_per_epoch must be at least 1, got ", steps_per_epoch);
        return step % steps_per_epoch == 0;
    }
};

/// A fresh draw every k steps (k = 1 is EveryStep).
struct EveryKSteps {
    Index k = 1;
    bool redraw_at(Index step, Index /*steps_per_epoch*/) const {
        require(step >= 0, "step must be non-negative, got ", step);
        require(k >= 1, "EveryKSteps: k must be at least 1, got ", k);
        return step % k == 0;
    }
};

}  // namespace npft::noise
