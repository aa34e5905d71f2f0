#pragma once
// Noise shaped like the quantization error itself: each outlier w_i with quantization step delta_i gets noise of
// variance s^2 delta_i^2 / 12, uniform (the exact rounding-noise model) or Gaussian with that variance.
#include <span>

#include "distribution.hpp"

namespace npft::noise {

/// out_i ~ U[-s delta_i / 2, s delta_i / 2): at s = 1, the distribution of round-to-nearest error on a grid of step delta_i.
struct QuantStepUniform {
    static constexpr bool needs_quant_steps = true;

    void draw(const NoiseRequest& r, std::span<float> out) const {
        validate_request(r, out, /*needs_clean_weights=*/false, needs_quant_steps, "QuantStepUniform");
        const auto& m = *r.mask;
        for (std::size_t i = 0; i < out.size(); ++i) {
            const Index p = m.positions[i];
            const float width = r.scale * r.quant_steps(m.row_of(p), m.col_of(p));
            out[i] = width * (uniform01(r.key, static_cast<std::uint64_t>(p)) - 0.5f);
        }
    }
};

/// out_i ~ N(0, s^2 delta_i^2 / 12): the Gaussian with QuantStepUniform's variance (unbounded tails, same second moment).
struct GaussianMatched {
    static constexpr bool needs_quant_steps = true;

    void draw(const NoiseRequest& r, std::span<float> out) const {
        validate_request(r, out, /*needs_clean_weights=*/false, needs_quant_steps, "GaussianMatched");
        constexpr float inv_sqrt12 = 0.28867513459481287f;
        const auto& m = *r.mask;
        for (std::size_t i = 0; i < out.size(); ++i) {
            const Index p = m.positions[i];
            const float sigma = r.scale * r.quant_steps(m.row_of(p), m.col_of(p)) * inv_sqrt12;
            out[i] = sigma * gaussian(r.key, static_cast<std::uint64_t>(p));
        }
    }
};

}  // namespace npft::noise
