#pragma once
// A low-rank correction of a quantized matrix's weights, trained through the quantizer (the fine-tuning of the quantized
// blocks' weights that Shabanovi et al. do, restricted to rank r so that it stays cheap and well-posed on a small
// calibration set).
//
//   W'    = W + A B                 W the full-precision weights, A rows x r (starts at 0), B r x cols (random)
//   W_q   = Q(W')                   Q: nearest code on the packed matrix's grid (its scales / zero points / LUT, fixed)
// The block computes with W_q. Q is piecewise constant, so the gradient passes through it unchanged (straight-through
// estimator): d loss / d W' := d loss / d W_q, then dA = G B^T, dB = A^T G. That gradient is exact for W' (what
// gradient() computes is d/d(A, B) of a loss of W' = W + A B; tests check it by finite differences).
// packed() folds A B into W and quantizes once: the codes decode to exactly what the block computed with at the end.
// Starting point: Q(W), i.e. round-to-nearest on the packed grid (a GPTQ matrix's own codes are not kept).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../quant/quantized_matrix.hpp"
#include "trainable_parameters.hpp"

namespace npft::ptq {

struct LoraShape {
    Index rank = 4;
    float init_scale = 1.0f;  ///< B starts as init_scale / sqrt(cols) x standard normal
    std::uint64_t seed = 0;   ///< B of matrix t is drawn from (seed, stream of t)
};

class TrainableLora {
public:
    TrainableLora(quant::QuantizedMatrix packed, MatrixView<const float> weights, LoraShape shape, std::uint64_t tensor)
        : packed_(std::move(packed)), weights_(packed_.rows(), packed_.cols()), rank_(shape.rank) {
        require_shape(weights, packed_.rows(), packed_.cols(), "full-precision weights for a LoRA correction");
        require(shape.rank >= 1 && shape.rank <= std::min(packed_.rows(), packed_.cols()), "LoRA rank must be in [1, ",
                std::min(packed_.rows(), packed_.cols()), "], got ", shape.rank);
        require(std::isfinite(shape.init_scale), "LoRA init scale must be finite, got ", shape.init_scale);
        for (Index r = 0; r < rows(); ++r)
            for (Index c = 0; c < cols(); ++c) weights_(r, c) = weights(r, c);
        require(weights_.allFinite(), "weights for a LoRA correction hold a non-finite value");
        ab_.assign(static_cast<std::size_t>((rows() + cols()) * rank_), 0.0f);
        const RandomKey key{shape.seed, make_stream(0x4c6f5241u, tensor)};
        const float scale = shape.init_scale / std::sqrt(static_cast<float>(cols()));
        for (Index i = 0; i < rank_ * cols(); ++i)
            ab_[static_cast<std::size_t>(rows() * rank_ + i)] = scale * gaussian(key, static_cast<std::uint64_t>(i));
    }

    Index rows() const { return packed_.rows(); }
    Index cols() const { return packed_.cols(); }
    Index rank() const { return rank_; }
    /// A (rows x rank, row-major), then B (rank x cols, row-major).
    std::span<float> parameters() { return ab_; }
    std::span<const float> parameters() const { return ab_; }

    /// W + A B, before quantization.
    Matrix corrected_weights() const { return weights_ + a() * b(); }

    void write_weights(MatrixView<float> out) const {
        require_shape(out, rows(), cols(), "reconstruction weights");
        const Matrix w = corrected_weights();
        for (Index r = 0; r < rows(); ++r)
            for (Index c = 0; c < cols(); ++c) out(r, c) = decode(r, c, w(r, c));
    }

    void gradient(MatrixView<const float> grad_weights, std::span<float> grad) const {
        require_shape(grad_weights, rows(), cols(), "weight gradient");
        require(grad.size() == ab_.size(), "LoRA gradient must have ", ab_.size(), " elements, got ", grad.size());
        Matrix g(rows(), cols());
        for (Index r = 0; r < rows(); ++r)
            for (Index c = 0; c < cols(); ++c) g(r, c) = grad_weights(r, c);
        Eigen::Map<Matrix>(grad.data(), rows(), rank_) = g * b().transpose();
        Eigen::Map<Matrix>(grad.data() + rows() * rank_, rank_, cols()) = a().transpose() * g;
    }

    double regularizer(double /*progress*/) const { return 0.0; }
    void add_regularizer_gradient(double /*progress*/, std::span<float> /*grad*/) const {}

    /// A B folded into W, quantized once on the packed grid.
    quant::QuantizedMatrix packed() const {
        quant::QuantizedMatrix out = packed_;
        const Matrix w = corrected_weights();
        for (Index r = 0; r < rows(); ++r)
            for (Index c = 0; c < cols(); ++c) out.codes().set(r, c, encode(r, c, w(r, c)));
        return out;
    }

private:
    Eigen::Map<const Matrix> a() const { return Eigen::Map<const Matrix>(ab_.data(), rows(), rank_); }
    Eigen::Map<const Matrix> b() const { return Eigen::Map<const Matrix>(ab_.data() + rows() * rank_, rank_, cols()); }
    std::uint32_t encode(Index r, Index c, float w) const {
        if (packed_.is_uniform()) return packed_.uniform_params(r, c / packed_.group_size()).encode(w);
        return packed_.lut_params(r).encode(w);
    }
    float decode(Index r, Index c, float w) const {
        const std::uint32_t q = encode(r, c, w);
        if (packed_.is_uniform()) return packed_.uniform_params(r, c / packed_.group_size()).decode(q);
        return packed_.lut_params(r).decode(q);
    }

    quant::QuantizedMatrix packed_;
    Matrix weights_;
    Index rank_;
    std::vector<float> ab_;
};

static_assert(TrainableParameters<TrainableLora>);

/// The policy: a rank-r correction of every packed matrix, folded in before the final quantization.
struct TrainLora {
    LoraShape shape;
    TrainableLora make(const quant::QuantizedMatrix& packed, MatrixView<const float> weights, std::uint64_t tensor) const {
        return TrainableLora(packed, weights, shape, tensor);
    }
    const char* name() const { return "lora"; }
};

static_assert(ParameterPolicy<TrainLora>);

}  // namespace npft::ptq
