#pragma once
// The trainable quantization parameters of one packed matrix: its metadata (uniform scales, or LUT levels) with the
// codes held fixed. Dequantized weights are linear in the metadata, so their gradient is exact (no straight-through
// estimate) and the result packs back into the same format.
//
// Parametrisation, so that one learning rate suits every matrix:
//   uniform:  scale[r,g]  = scale0[r,g] * (1 + theta[r,g])                (zero points fixed)
//   lut:      level[r,k]  = level0[r,k] + theta[r,k] * unit[r],  unit[r] = max_k |level0[r,k]| (1 for an all-zero row)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../quant/quantized_matrix.hpp"

namespace npft::ptq {

class TrainableMetadata {
public:
    explicit TrainableMetadata(quant::QuantizedMatrix packed) : packed_(std::move(packed)) {
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
        theta_.assign(base_.size(), 0.0f);
    }

    Index rows() const { return packed_.rows(); }
    Index cols() const { return packed_.cols(); }
    /// The trainable vector theta (0 reproduces the packed matrix it was made from).
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
                    double sum = 0.0;
                    for (Index c = g * group; c < (g + 1) * group; ++c)
                        sum += static_cast<double>(grad_weights(r, c)) * (code(r, c) - zeros_[at]);
                    grad_theta[at] = static_cast<float>(sum * base_[at]);
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
            for (std::size_t i = 0; i < base_.size(); ++i) out.scales()[i] = half(std::max(0.0f, value(i)));
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

private:
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
            return quant::dequantize_uniform(q, value(at), zeros_[at]);
        }
        return value(static_cast<std::size_t>((r << packed_.bits()) + q));
    }

    quant::QuantizedMatrix packed_;
    std::vector<std::uint8_t> codes_;  // unpacked once: [rows][cols]
    std::vector<float> base_;          // scale0 per (row, group), or level0 per (row, level)
    std::vector<float> zeros_;         // uniform: zero point per (row, group)
    std::vector<float> units_;         // lut: per-row unit of theta
    std::vector<float> theta_;
};

}  // namespace npft::ptq
