#pragma once
// Learnable rounding (AdaRound, Nagel et al. 2020): each weight of a uniform grid is rounded down or up, and which one
// is learned. The grid (scales, zero points) stays as packed; the weights start from the full-precision ones.
//
//   h(V)  = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)                 zeta = 1.1, gamma = -0.1 (rectified sigmoid)
//   q     = clamp(floor(w / s) + z + h(V), 0, 2^bits - 1)                w = s (q - z) is what the block computes with
//   R(V)  = lambda * mean_weights(1 - |2 h(V) - 1|^beta)                  pushes every h to 0 or 1
// V starts where h(V) = frac(w / s), so the soft weights start at the full-precision ones (inside the grid's range).
// beta is annealed from beta_start to beta_end after a warm-up fraction without the penalty. packed() hardens h to
// h >= 1/2 ? 1 : 0: every weight is then a grid point s (q - z) with an integer code q.
// lambda multiplies a mean over weights (not a sum) so that one value suits every matrix size; it is weighed against the
// window's mean squared error, so too small a lambda leaves h soft and hardening costs error (compare a WindowReport's
// loss_trained, soft, with loss_after, hardened).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../quant/quantized_matrix.hpp"
#include "trainable_parameters.hpp"

namespace npft::ptq {

struct RoundingSchedule {
    float lambda = 10.0f;       ///< weight of the penalty against the error relative to the given quantization's
    float beta_start = 20.0f;   ///< penalty exponent at the end of the warm-up (flat: only h near 1/2 is pushed)
    float beta_end = 2.0f;      ///< at the last step (steep: every h is pushed to 0 or 1)
    float warmup = 0.2f;        ///< fraction of the steps without the penalty
};

class TrainableRounding {
public:
    static constexpr float zeta = 1.1f;
    static constexpr float gamma = -0.1f;

    TrainableRounding(quant::QuantizedMatrix packed, MatrixView<const float> weights, RoundingSchedule schedule = {})
        : packed_(std::move(packed)), schedule_(schedule) {
        require(packed_.is_uniform(), "learnable rounding needs a uniform grid (scales and zero points), not a LUT");
        require_shape(weights, packed_.rows(), packed_.cols(), "full-precision weights for learnable rounding");
        require(schedule.lambda >= 0.0f && std::isfinite(schedule.lambda), "rounding lambda must be finite and >= 0, got ",
                schedule.lambda);
        require(schedule.beta_start >= 1.0f && schedule.beta_end >= 1.0f, "rounding beta must be >= 1, got ",
                schedule.beta_start, " -> ", schedule.beta_end);
        require(schedule.warmup >= 0.0f && schedule.warmup < 1.0f, "rounding warm-up must be in [0, 1), got ", schedule.warmup);
        const Index rows = packed_.rows(), cols = packed_.cols();
        floor_.resize(static_cast<std::size_t>(rows * cols));
        v_.resize(floor_.size());
        for (Index r = 0; r < rows; ++r)
            for (Index c = 0; c < cols; ++c) {
                const quant::UniformParams p = packed_.uniform_params(r, c / packed_.group_size());
                const float x = p.scale != 0.0f ? weights(r, c) / p.scale : 0.0f;
                require(std::isfinite(x), "weights for learnable rounding hold a non-finite value at (", r, ", ", c, ")");
                const float down = std::floor(x);
                const std::size_t at = index(r, c);
                floor_[at] = down;
                // sigmoid(V) = (frac - gamma) / (zeta - gamma), in (0.083, 0.917) for frac in [0, 1): V is finite.
                const float s = (x - down - gamma) / (zeta - gamma);
                v_[at] = std::log(s / (1.0f - s));
            }
    }

    Index rows() const { return packed_.rows(); }
    Index cols() const { return packed_.cols(); }
    std::span<float> parameters() { return v_; }
    std::span<const float> parameters() const { return v_; }

    /// The soft rounding offset h(V) of weight (r, c), in [0, 1].
    float offset(Index r, Index c) const { return std::clamp(stretched(v_[index(r, c)]), 0.0f, 1.0f); }

    void write_weights(MatrixView<float> out) const {
        require_shape(out, rows(), cols(), "reconstruction weights");
        for (Index r = 0; r < rows(); ++r)
            for (Index c = 0; c < cols(); ++c) {
                const quant::UniformParams p = params(r, c);
                out(r, c) = p.scale * (std::clamp(floor_[index(r, c)] + p.zero + offset(r, c), 0.0f, max_code()) - p.zero);
            }
    }

    void gradient(MatrixView<const float> grad_weights, std::span<float> grad) const {
        require_shape(grad_weights, rows(), cols(), "weight gradient");
        require(grad.size() == v_.size(), "rounding gradient must have ", v_.size(), " elements, got ", grad.size());
        for (Index r = 0; r < rows(); ++r)
            for (Index c = 0; c < cols(); ++c) {
                const quant::UniformParams p = params(r, c);
                const std::size_t at = index(r, c);
                const float q = floor_[at] + p.zero + offset(r, c);
                // Zero where the code or h is clipped: the weight does not move with V there.
                const bool moves = q > 0.0f && q < max_code();
                grad[at] = moves ? grad_weights(r, c) * p.scale * offset_slope(v_[at]) : 0.0f;
            }
    }

    double regularizer(double progress) const {
        const float beta = this->beta(progress);
        if (beta == 0.0f) return 0.0;
        double sum = 0.0;
        for (Index r = 0; r < rows(); ++r)
            for (Index c = 0; c < cols(); ++c) sum += 1.0 - std::pow(std::abs(2.0 * offset(r, c) - 1.0), static_cast<double>(beta));
        return schedule_.lambda * sum / static_cast<double>(v_.size());
    }

    void add_regularizer_gradient(double progress, std::span<float> grad) const {
        require(grad.size() == v_.size(), "rounding gradient must have ", v_.size(), " elements, got ", grad.size());
        const float beta = this->beta(progress);
        if (beta == 0.0f) return;
        const double weight = schedule_.lambda / static_cast<double>(v_.size());
        for (Index r = 0; r < rows(); ++r)
            for (Index c = 0; c < cols(); ++c) {
                const std::size_t at = index(r, c);
                const double u = 2.0 * offset(r, c) - 1.0;
                // d/dh (1 - |u|^beta) = -2 beta |u|^(beta - 1) sign(u)
                const double dh = -2.0 * beta * std::pow(std::abs(u), beta - 1.0) * (u > 0 ? 1.0 : (u < 0 ? -1.0 : 0.0));
                grad[at] += static_cast<float>(weight * dh * offset_slope(v_[at]));
            }
    }

    /// The penalty's exponent at `progress`; 0 during the warm-up (no penalty).
    float beta(double progress) const {
        if (progress < schedule_.warmup) return 0.0f;
        const double t = (progress - schedule_.warmup) / (1.0 - schedule_.warmup);
        return static_cast<float>(schedule_.beta_start + (schedule_.beta_end - schedule_.beta_start) * std::min(1.0, t));
    }

    /// The packed matrix with every offset hardened to 0 or 1 (same scales and zero points).
    quant::QuantizedMatrix packed() const {
        quant::QuantizedMatrix out = packed_;
        for (Index r = 0; r < rows(); ++r)
            for (Index c = 0; c < cols(); ++c) {
                const float hard = offset(r, c) >= 0.5f ? 1.0f : 0.0f;
                const float q = std::clamp(floor_[index(r, c)] + params(r, c).zero + hard, 0.0f, max_code());
                out.codes().set(r, c, static_cast<std::uint32_t>(q));
            }
        return out;
    }

private:
    std::size_t index(Index r, Index c) const { return static_cast<std::size_t>(r * cols() + c); }
    quant::UniformParams params(Index r, Index c) const { return packed_.uniform_params(r, c / packed_.group_size()); }
    float max_code() const { return static_cast<float>((1u << packed_.bits()) - 1u); }
    static float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }
    static float stretched(float v) { return sigmoid(v) * (zeta - gamma) + gamma; }
    /// d h / d V: zero where the stretched sigmoid is clipped to 0 or 1.
    static float offset_slope(float v) {
        const float h = stretched(v);
        if (h <= 0.0f || h >= 1.0f) return 0.0f;
        const float s = sigmoid(v);
        return s * (1.0f - s) * (zeta - gamma);
    }

    quant::QuantizedMatrix packed_;
    RoundingSchedule schedule_;
    std::vector<float> floor_;  // floor(w / s) per weight, [rows][cols]
    std::vector<float> v_;
};

static_assert(TrainableParameters<TrainableRounding>);

/// The policy: learn each weight's rounding direction on the packed matrix's grid.
struct TrainRounding {
    RoundingSchedule schedule;
    TrainableRounding make(const quant::QuantizedMatrix& packed, MatrixView<const float> weights, std::uint64_t /*tensor*/) const {
        return TrainableRounding(packed, weights, schedule);
    }
    const char* name() const { return "rounding"; }
};

static_assert(ParameterPolicy<TrainRounding>);

}  // namespace npft::ptq
