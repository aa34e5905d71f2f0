#pragma once
// The NoiseDistribution concept: how the noise on the selected weights is drawn, for one tensor and one draw.
#include <cmath>
#include <concepts>
#include <span>
#include <type_traits>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor_view.hpp"
#include "../outliers/outlier_mask.hpp"

namespace npft::noise {

/// One draw for one weight tensor. `clean_weights` are the weights without noise (the reference noise depends on
/// them); `quant_steps` holds each weight's quantization step (empty unless the distribution needs it); `scale` is the
/// schedule's s at this step; `key` identifies the draw (the pipeline uses seed and make_stream(draw, tensor)).
struct NoiseRequest {
    const outliers::OutlierMask* mask = nullptr;
    MatrixView<const float> clean_weights;
    MatrixView<const float> quant_steps;
    float scale = 1.0f;
    RandomKey key{};
};

/// A noise distribution over the selected positions.
///   D::needs_quant_steps : static constexpr bool, whether draw() reads request.quant_steps
///   d.draw(request, out)  : out[i] = noise for position request.mask->positions[i]; out.size() == mask count.
///                           Each value is a function of (key, position, inputs) only: the same bits on any thread count.
template <class D>
concept NoiseDistribution = requires(const D& d, const NoiseRequest& r, std::span<float> out) {
    { D::needs_quant_steps } -> std::convertible_to<bool>;
    typename std::bool_constant<D::needs_quant_steps>;
    d.draw(r, out);
};

/// Checks a request against the output span and what a distribution named `who` reads.
inline void validate_request(const NoiseRequest& r, std::span<const float> out, bool needs_clean_weights,
                             bool needs_quant_steps, const char* who) {
    require(r.mask != nullptr, who, ": NoiseRequest::mask is null");
    const outliers::OutlierMask& m = *r.mask;
    require(static_cast<Index>(out.size()) == m.count(), who, ": output span holds ", out.size(),
            " values, expected one per outlier (", m.count(), ")");
    require(std::isfinite(r.scale) && r.scale >= 0.0f, who, ": noise scale must be finite and non-negative, got ", r.scale);
    if (needs_clean_weights) require_shape(r.clean_weights, m.rows, m.cols, "NoiseRequest::clean_weights (the mask's shape)");
    if (needs_quant_steps) require_shape(r.quant_steps, m.rows, m.cols, "NoiseRequest::quant_steps (the mask's shape)");
}

}  // namespace npft::noise
