#pragma once
// Which loss NPFT minimises: the loss of the perturbed model (the reference implementation), or a balance between the
// clean and the perturbed model, (1 - b) L(w + LoRA) + b L(w + d + LoRA), which costs a second gradient call per step
// and keeps the clean model's loss in view.
#include <cmath>
#include <concepts>

#include "../core/error.hpp"

namespace npft::train {

/// A loss policy: `p.perturbed_weight()` is b in [0, 1]; the step minimises (1 - b) * clean + b * perturbed.
/// b = 1 needs one gradient call per step, b < 1 two.
template <class L>
concept LossPolicy = requires(const L& policy) {
    { policy.perturbed_weight() } -> std::convertible_to<float>;
};

/// The reference: the plain loss of the perturbed model.
struct Perturbed {
    float perturbed_weight() const { return 1.0f; }
};

/// (1 - b) * L(clean) + b * L(perturbed).
struct Balanced {
    float b = 0.5f;
    float perturbed_weight() const {
        require(std::isfinite(b) && b >= 0.0f && b <= 1.0f, "Balanced loss weight b must be in [0, 1], got ", b);
        return b;
    }
};

static_assert(LossPolicy<Perturbed>);
static_assert(LossPolicy<Balanced>);

}  // namespace npft::train
