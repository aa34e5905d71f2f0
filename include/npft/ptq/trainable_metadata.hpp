#pragma once
// The trainable quantization parameters of one packed matrix: its metadata (uniform scales and zero points, or LUT
// levels) with the codes held fixed. Dequantized weights are linear in each metadata value, so their gradient is exact
// (no straight-through estimate) and the result packs back into the same format.
//
// Parametrisation, so that one learning rate suits every matrix:
//   uniform:  scale[r,g]  = scale0[r,g] * (1 + theta[r,g])
//             zero[r,g]   = zero0[r,g] + phi[r,g]       (asymmetric grids with zero points trained; in code units)
//   lut:      level[r,k]  = level0[r,k] + theta[r,k] * unit[r],  unit[r] = max_k |level0[r,k]| (1 for an all-zero row)
// parameters() = theta, then phi. The format stores integral zero points: packed() rounds phi's zero to the nearest
// code in range, so a trained zero point moves the packed error by up to half a code step times the scale.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../quant/quantized_matrix.hpp"
#include "trainable_parameters.hpp"

namespace npft::ptq {

class TrainableMetadata {
public:
    explicit TrainableMetadata(quant::QuantizedMatrix packed, bool train_zero_points = false)
        : packed_(std::move(packed)),
          train_zeros_(train_zero_points && packed_.format() == quant::Format::uniform_asymmetric) {
        const Index rows = packed_.rows(), cols = packed_.cols();
        codes_.resize(static_cast<std::size_t>(rows * cols));
        for (Index r = 0; r < rows; ++r)
            for (Index c = 0; c < cols; ++c) codes_[static_cast<std::size_t>(r * cols + c)] = static_cast<std::uint8_t>(packed_.codes().get(r, c));
        if (packed_.is_uniform()) {
            base_.resize(static_cast<std::size_t>(rows * packed_.groups()));
            zeros_.resize(base_.size());
            for (Index r = 0; r < rows; ++r) {
                for (Index g = 0; g < packed_.groups(); ++g) {
                    const quant::UniformParams p = packed_.uniform_params(r, g);
                    base_[static_cast<std::size_t>(r * packed_.groups() + g)] = p.scale;
                    zeros_[static_cast<std::size_t>(r * packed_.groups() + g)] = p.zero;
                }
            }
        } else {
            const Index levels = Index{1} << packed_.bits();
            base_.resize(static_cast<std::size_t>(rows * levels));
            units_.resize(static_cast<std::size_t>(rows));
            for (Index r = 0; r < rows; ++r) {
                float unit = 0.0f;
                for (Index k = 0; k < levels; ++k) {
                    const float level = static_cast<float>(packed_.lut()[static_cast<std::size_t>(r * levels + k)]);
                    base_[static_cast<std::size_t>(r * levels + k)] = level;
                    unit = std::max(unit, std::abs(level));
                }
                units_[static_cast<std::size_t>(r)] = unit > 0.0f ? unit : 1.0f;
            }
        }
        theta_.assign(base_.size() * (train_zeros_ ? 2 : 1), 0.0f);
    }

    Index rows() const { return packed_.rows(); }
    Index cols() const { return packed_.cols(); }
    /// Whether zero points are trained (asymmetric grids only).
    bool trains_zero_points() const { return train_zeros_; }
    /// The trainable vector theta, then phi (0 reproduces the packed matrix it was made from).
    std::span<float> parameters() { return theta_; }
    std::span<const float> parameters() const { return theta_; }

    /// Writes the dequantized weights under the current theta (in float, before any fp16 rounding).
    void write_weights(MatrixView<float> out) const {
        require_shape(out, rows(), cols(), "reconstruction weights");
        for (Index r = 0; r < rows(); ++r)
            for (Index c = 0; c < cols(); ++c) out(r, c) = weight(r, c);
    }

    /// d loss / d theta from d loss / d weights (overwrites `grad_theta`).
    void gradient(MatrixView<const float> grad_weights, std::span<float> grad_theta) const {
        require_shape(grad_weights, rows(), cols(), "weight gradient");
        require(grad_theta.size() == theta_.size(), "theta gradient must have ", theta_.size(), " elements, got ",
                grad_theta.size());
        std::fill(grad_theta.begin(), grad_theta.end(), 0.0f);
        const Index cols_ = cols();
        if (packed_.is_uniform()) {
            const Index group = packed_.group_size(), groups = packed_.groups();
            for (Index r = 0; r < rows(); ++r) {
                for (Index g = 0; g < groups; ++g) {
                    const std::size_t at = static_cast<std::size_t>(r * groups + g);
                    double sum = 0.0, plain = 0.0;
                    const float z = zero(at);
                    for (Index c = g * group; c < (g + 1) * group; ++c) {
                        sum += static_cast<double>(grad_weights(r, c)) * (code(r, c) - z);
                        plain += static_cast<double>(grad_weights(r, c));
                    }
                    grad_theta[at] = static_cast<float>(sum * base_[at]);
                    // w = scale * (q - zero): d w / d phi = -scale.
                    if (train_zeros_) grad_theta[base_.size() + at] = static_cast<float>(-plain * value(at));
                }
            }
        } else {
            const Index levels = Index{1} << packed_.bits();
            std::vector<double> sums(static_cast<std::size_t>(levels));
            for (Index r = 0; r < rows(); ++r) {
                std::fill(sums.begin(), sums.end(), 0.0);
                for (Index c = 0; c < cols_; ++c) sums[codes_[static_cast<std::size_t>(r * cols_ + c)]] += grad_weights(r, c);
                for (Index k = 0; k < levels; ++k)
                    grad_theta[static_cast<std::size_t>(r * levels + k)] =
                        static_cast<float>(sums[static_cast<std::size_t>(k)] * units_[static_cast<std::size_t>(r)]);
            }
        }
    }

    /// The packed matrix with the learned metadata (rounded to fp16; scales kept non-negative; LUT levels re-sorted
    /// ascending with the codes remapped, so the table stays a valid nearest-level grid).
    quant::QuantizedMatrix packed() const {
        quant::QuantizedMatrix out = packed_;
        if (packed_.is_uniform()) {
            const float max_code = static_cast<float>((1u << packed_.bits()) - 1u);
            for (std::size_t i = 0; i < base_.size(); ++i) {
                out.scales()[i] = half(std::max(0.0f, value(i)));
                if (train_zeros_) out.zeros()[i] = half(std::clamp(std::nearbyint(zero(i)), 0.0f, max_code));
            }
            return out;
        }
        const Index levels = Index{1} << packed_.bits();
        std::vector<std::uint32_t> order(static_cast<std::size_t>(levels)), rank(static_cast<std::size_t>(levels));
        for (Index r = 0; r < rows(); ++r) {
            const std::size_t row = static_cast<std::size_t>(r * levels);
            std::iota(order.begin(), order.end(), 0u);
            std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) { return value(row + a) < value(row + b); });
            for (std::size_t k = 0; k < order.size(); ++k) {
                rank[order[k]] = static_cast<std::uint32_t>(k);
                out.lut()[row + k] = half(value(row + order[k]));
            }
            for (Index c = 0; c < cols(); ++c) out.codes().set(r, c, rank[codes_[static_cast<std::size_t>(r * cols() + c)]]);
        }
        return out;
    }

    /// Scales and levels carry no penalty.
    double regularizer(double /*progress*/) const { return 0.0; }
    void add_regularizer_gradient(double /*progress*/, std::span<float> /*grad*/) const {}

private:
    float zero(std::size_t i) const { return train_zeros_ ? zeros_[i] + theta_[base_.size() + i] : zeros_[i]; }
    float code(Index r, Index c) const { return static_cast<float>(codes_[static_cast<std::size_t>(r * cols() + c)]); }
    /// Current metadata value i (scale or level).
    float value(std::size_t i) const {
        if (packed_.is_uniform()) return base_[i] * (1.0f + theta_[i]);
        const Index levels = Index{1} << packed_.bits();
        return base_[i] + theta_[i] * units_[i / static_cast<std::size_t>(levels)];
    }
    float weight(Index r, Index c) const {
        const std::uint8_t q = codes_[static_cast<std::size_t>(r * cols() + c)];
        if (packed_.is_uniform()) {
            const std::size_t at = static_cast<std::size_t>(r * packed_.groups() + c / packed_.group_size());
            return quant::dequantize_uniform(q, value(at), zero(at));
        }
        return value(static_cast<std::size_t>((r << packed_.bits()) + q));
    }

    quant::QuantizedMatrix packed_;
    bool train_zeros_ = false;
    std::vector<std::uint8_t> codes_;  // unpacked once: [rows][cols]
    std::vector<float> base_;          // scale0 per (row, group), or level0 per (row, level)
    std::vector<float> zeros_;         // uniform: zero point per (row, group)
    std::vector<float> units_;         // lut: per-row unit of theta
    std::vector<float> theta_;
};

static_assert(TrainableParameters<TrainableMetadata>);

/// The policy: train the metadata of every packed matrix, codes fixed (zero points too where the grid has them, unless
/// switched off).
struct TrainScales {
    bool zero_points = true;
    TrainableMetadata make(const quant::QuantizedMatrix& packed, MatrixView<const float> /*weights*/, std::uint64_t /*tensor*/) const {
        return TrainableMetadata(packed, zero_points);
    }
    const char* name() const { return "scales"; }
};

static_assert(ParameterPolicy<TrainScales>);

}  // namespace npft::ptq
