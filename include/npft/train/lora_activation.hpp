#pragma once
// LoRA in activation space, with PEFT's dropout: y = W x + (alpha / r) B A (m . x) / (1 - p), where m is a 0/1 mask per
// (token, input feature) that keeps each entry with probability 1 - p (inverted dropout: E[m / (1 - p)] = 1).
// Dropout acts on every token separately, which a weight written once per step cannot express, so a model that wants it
// calls an ActivationLora object inside its own forward and backward for each adapted weight (LoraActivationModel below).
// The mask is a pure function of (seed, step, tensor, token, feature) through core/random.hpp: the same seed gives the
// same bits on any thread count and after a checkpoint/resume, and backward recomputes it instead of storing it.
#include <cmath>
#include <cstdint>
#include <string>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor_view.hpp"
#include "lora.hpp"

namespace npft::train {

/// The adapter term of one weight matrix W (rows x cols) as the model sees it. Activations hold one column per token:
/// x is cols x tokens and y = W x is rows x tokens (a tokens x features buffer is passed as `view.transposed()`).
/// The Pipeline creates these objects and hands them to the model; the model only calls forward and backward, from one
/// thread at a time per adapter (backward accumulates into the adapter's own gradients).
class ActivationLora {
public:
    ActivationLora() = default;
    /// Reads A, B and the scaling from `adapter`, which must outlive this object (the pipeline owns both).
    ActivationLora(const LoraAdapter& adapter, float dropout) : adapter_(&adapter), dropout_(dropout) {
        detail::require_lora_dropout(dropout);
        set_dropout_threshold();
    }

    // ---- called by the model ---------------------------------------------------------------------------------------
    /// y += (alpha / r) B A (m . x) / (1 - p). `first_token` numbers the columns of x when one call sees only part of
    /// the batch's tokens (e.g. one sequence at a time), so that every token keeps its own mask.
    void forward(MatrixView<const float> x, MatrixView<float> y, Index first_token = 0) const {
        check_input(x, first_token);
        require_shape(y, rows(), x.cols(), "LoRA output y (rows x tokens)");
        ++forward_calls_;
        const ColumnMatrix h = adapter_->a() * ColumnMatrix(keep_factors(first_token, x.cols()).cwiseProduct(to_eigen(x)));
        detail::with_eigen(y, [&](auto out) { out.noalias() += scaling() * (adapter_->b() * h); });
    }

    /// Accumulates dL/dA and dL/dB from dy = dL/dy (rows x tokens) and adds the adapter's share of dL/dx to `dx`
    /// (cols x tokens). x and first_token must be those of the matching forward call: the mask is recomputed from them.
    void backward(MatrixView<const float> x, MatrixView<const float> dy, MatrixView<float> dx, Index first_token = 0) {
        check_input(x, first_token);
        require_shape(dx, cols(), x.cols(), "LoRA input gradient dx (cols x tokens)");
        const ColumnMatrix du = accumulate(x, dy, first_token);
        detail::with_eigen(dx, [&](auto out) { out += du; });
    }
    /// backward without dx, for an input that needs no gradient (e.g. the first layer's).
    void backward(MatrixView<const float> x, MatrixView<const float> dy, Index first_token = 0) {
        (void)accumulate(x, dy, first_token, false);
    }

    // ---- read by the pipeline and by tests -------------------------------------------------------------------------
    Index rows() const { return adapter_ ? adapter_->rows() : 0; }
    Index cols() const { return adapter_ ? adapter_->cols() : 0; }
    Index rank() const { return adapter_ ? adapter_->rank() : 0; }
    float scaling() const { return adapter_ ? adapter_->scaling() : 0.0f; }
    float dropout() const { return dropout_; }
    bool training() const { return training_; }

    /// Whether entry (token, feature) of the input survives dropout under the current key (always true outside training).
    bool keeps(Index token, Index feature) const {
        require(token >= 0 && feature >= 0 && feature < cols(), "ActivationLora::keeps: (token ", token, ", feature ",
                feature, ") is outside [0, inf) x [0, ", cols(), ")");
        if (!training_ || threshold_ == 0) return true;
        const auto element = static_cast<std::uint64_t>(token) * static_cast<std::uint64_t>(cols()) +
                             static_cast<std::uint64_t>(feature);
        return (random_words(key_, element / 4)[element % 4] >> 8) >= threshold_;
    }

    /// Gradients accumulated by backward since the last zero_gradients().
    const Matrix& grad_a() const { return grad_a_; }
    const Matrix& grad_b() const { return grad_b_; }
    Index forward_calls() const { return forward_calls_; }
    Index backward_calls() const { return backward_calls_; }

    // ---- set by the pipeline ---------------------------------------------------------------------------------------
    /// Keys the masks of the coming calls by (seed, step, tensor); token and feature index within the stream.
    void set_mask_key(std::uint64_t seed, std::uint64_t step, std::uint64_t tensor) {
        key_ = RandomKey{seed, make_stream(step, tensor, dropout_stream)};
    }
    /// Training applies the dropout; evaluation (Fisher pass, trace estimate) uses every input, unscaled.
    void set_training(bool training) { training_ = training; }
    /// Clears the gradients and the call counters.
    void zero_gradients() {
        grad_a_ = Matrix::Zero(rank(), cols());
        grad_b_ = Matrix::Zero(rows(), rank());
        forward_calls_ = 0;
        backward_calls_ = 0;
    }

    /// Stream tag of the dropout masks (the pipeline's noise and adapter initialization use 1 and 2).
    static constexpr std::uint64_t dropout_stream = 3;

private:
    using ColumnMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

    void set_dropout_threshold() {
        // Keep iff the 24 random bits of the entry are >= ceil(p 2^24): probability 1 - p up to 2^-24.
        threshold_ = static_cast<std::uint32_t>(std::ceil(static_cast<double>(dropout_) * 16777216.0));
    }

    void check_input(const MatrixView<const float>& x, Index first_token) const {
        require(adapter_ != nullptr, "ActivationLora: this adapter is not bound to a LoRA pair (default-constructed)");
        require(x.rows() == cols(), "LoRA input x must have ", cols(), " rows (input features; one column per token), got ",
                x.rows(), " x ", x.cols());
        require(first_token >= 0, "LoRA first_token must be non-negative, got ", first_token);
    }

    /// The dropout factors of the given tokens: m / (1 - p), i.e. 0 or 1 / (1 - p), as a column-major cols x tokens
    /// matrix (each token's features contiguous, like the mask's element numbering); all ones outside training.
    ColumnMatrix keep_factors(Index first_token, Index tokens) const {
        if (!training_ || threshold_ == 0) return ColumnMatrix::Ones(cols(), tokens);
        ColumnMatrix k(cols(), tokens);
        const float inverse_keep = 1.0f / (1.0f - dropout_);
        const auto width = static_cast<std::uint64_t>(cols());
        std::uint64_t block = ~std::uint64_t{0};
        Philox4x32::Counter words{};
        for (Index t = 0; t < tokens; ++t) {
            for (Index f = 0; f < cols(); ++f) {
                const std::uint64_t element = static_cast<std::uint64_t>(first_token + t) * width + static_cast<std::uint64_t>(f);
                if (element / 4 != block) {  // one Philox call gives the bits of four consecutive entries
                    block = element / 4;
                    words = random_words(key_, block);
                }
                k(f, t) = (words[element % 4] >> 8) >= threshold_ ? inverse_keep : 0.0f;
            }
        }
        return k;
    }

    /// Accumulates dB += s dy h^T and dA += (s B^T dy) u^T, with u = (m . x)/(1-p) and h = A u; returns dL/dx through
    /// the adapter, m . (A^T s B^T dy)/(1-p) (empty when not wanted).
    ColumnMatrix accumulate(const MatrixView<const float>& x, const MatrixView<const float>& dy, Index first_token,
                            bool want_dx = true) {
        check_input(x, first_token);
        require_shape(dy, rows(), x.cols(), "LoRA output gradient dy (rows x tokens)");
        if (grad_a_.rows() != rank() || grad_a_.cols() != cols() || grad_b_.rows() != rows() || grad_b_.cols() != rank()) {
            zero_gradients();
        }
        ++backward_calls_;
        const ColumnMatrix k = keep_factors(first_token, x.cols());
        const ColumnMatrix u = k.cwiseProduct(to_eigen(x));
        const ColumnMatrix h = adapter_->a() * u;
        ColumnMatrix dh(rank(), x.cols());
        detail::with_eigen(dy, [&](auto g) {
            grad_b_.noalias() += scaling() * (g * h.transpose());
            dh.noalias() = scaling() * (adapter_->b().transpose() * g);
        });
        grad_a_.noalias() += dh * u.transpose();
        if (!want_dx) return {};
        return k.cwiseProduct(adapter_->a().transpose() * dh);  // the same mask and factor carry dL/du back to x
    }

    const LoraAdapter* adapter_ = nullptr;
    float dropout_ = 0.0f;
    std::uint32_t threshold_ = 0;
    RandomKey key_{};
    bool training_ = true;
    Matrix grad_a_, grad_b_;
    mutable Index forward_calls_ = 0;
    Index backward_calls_ = 0;
};

/// Optional model capability: LoRA applied by the model itself, on activations, so that dropout can act per token.
///   model.set_lora_adapter(name, adapter)   the pipeline hands over the ActivationLora of weight `name` before training
///                                           and nullptr after; while it is set, the model's forward for that weight
///                                           calls adapter->forward(x, y) after y = W x, and its backward calls
///                                           adapter->backward(x, dy, dx) (which adds to dx and accumulates dA, dB).
/// With LoraOptions::dropout > 0 the pipeline uses this path for every LoRA-adapted tensor and then writes only
/// W0 + noise into that tensor's values (never B A); with dropout 0 it keeps LoRA in weight space and never calls it.
template <class M>
concept LoraActivationModel = requires(M& model, const std::string& name, ActivationLora* adapter) {
    model.set_lora_adapter(name, adapter);
};

}  // namespace npft::train
