#pragma once
// LoRA (Hu et al. 2021) in weight space: W_eff = W_base + (alpha / rank) * B A, written into the model's own weight
// memory before each call. The user's backward gives G = dL/dW_eff, and the adapter gradients follow exactly:
//   dL/dB = (alpha / rank) * G A^T,   dL/dA = (alpha / rank) * B^T G.
// So a user's model needs no LoRA code at all. LoRA dropout (PEFT's, on the adapter's input, per token and feature)
// cannot be expressed in weight space: it needs the model to apply the adapter to its activations, through the optional
// capability of lora_activation.hpp. Weight-space LoRA has no dropout variant on purpose: the candidate (dropping
// columns of A, one mask per step shared by all tokens of the batch) is a different regularizer whose strength at a
// given p has nothing to do with PEFT's, so a recipe's p = 0.05 would silently mean something else. The pipeline
// therefore refuses dropout > 0 for a model without the capability (see docs/pipeline.md).
#include <cmath>
#include <type_traits>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor_view.hpp"

namespace npft::train {

namespace detail {
/// Calls f with an Eigen expression of `view`: a Map with unit inner stride when the rows are contiguous (the common
/// case, which Eigen's GEMM reads and writes in place), a fully strided Map otherwise (GEMM then goes through a copy).
template <class T, class F>
decltype(auto) with_eigen(const MatrixView<T>& view, F&& f) {
    if (view.col_stride() == 1) {
        using Plain = std::conditional_t<std::is_const_v<T>, const Matrix, Matrix>;
        return f(Eigen::Map<Plain, Eigen::Unaligned, Eigen::OuterStride<>>(view.data(), view.rows(), view.cols(),
                                                                            Eigen::OuterStride<>(view.row_stride())));
    }
    return f(to_eigen(view));
}
}  // namespace detail

namespace detail {
inline void require_lora_dropout(float dropout) {
    require(std::isfinite(dropout) && dropout >= 0.0f && dropout < 1.0f, "LoRA dropout must be finite and in [0, 1), got ",
            dropout);
}
}  // namespace detail

/// LoRA hyper-parameters. Rank and alpha follow method.md (the NPFT reference recipe for LLaMA: rank 16, alpha 32).
/// `dropout` is the probability p of zeroing an entry of the adapter's input (PEFT's lora_dropout). It defaults to 0,
/// not to the recipe's 0.05, because dropout needs a model with the LoraActivationModel capability
/// (lora_activation.hpp) and the default must work for every model; set `.dropout = 0.05f` to follow the recipe.
struct LoraOptions {
    Index rank = 16;
    float alpha = 32.0f;
    float dropout = 0.0f;
};

/// The adapter pair of one weight matrix of shape rows x cols: B (rows x rank) and A (rank x cols).
class LoraAdapter {
public:
    LoraAdapter() = default;
    LoraAdapter(Index rows, Index cols, LoraOptions options) : options_(options) {
        require(options.rank >= 1, "LoRA rank must be at least 1, got ", options.rank);
        require(std::isfinite(options.alpha) && options.alpha > 0.0f, "LoRA alpha must be finite and positive, got ",
                options.alpha);
        detail::require_lora_dropout(options.dropout);
        require(rows > 0 && cols > 0, "a LoRA adapter needs a non-empty weight, got ", rows, " x ", cols);
        a_ = Matrix::Zero(options.rank, cols);
        b_ = Matrix::Zero(rows, options.rank);
    }

    Index rows() const { return b_.rows(); }
    Index cols() const { return a_.cols(); }
    Index rank() const { return options_.rank; }
    float scaling() const { return options_.alpha / static_cast<float>(options_.rank); }
    float dropout() const { return options_.dropout; }

    Matrix& a() { return a_; }
    Matrix& b() { return b_; }
    const Matrix& a() const { return a_; }
    const Matrix& b() const { return b_; }

    /// A from the keyed generator, uniform in +-1/sqrt(cols) (PyTorch's Kaiming-uniform with a = sqrt(5), as PEFT
    /// initializes A); B = 0, so a fresh adapter leaves the weight unchanged.
    void initialize(RandomKey key) {
        const float bound = 1.0f / std::sqrt(static_cast<float>(cols()));
        for (Index i = 0; i < a_.size(); ++i) a_.data()[i] = uniform(key, static_cast<std::uint64_t>(i), -bound, bound);
        b_.setZero();
    }

    /// out = base + scaling * B A (out may be the model's strided view).
    void write_effective(const Matrix& base, MatrixView<float> out) const {
        require_shape(out, rows(), cols(), "LoRA output weight");
        detail::with_eigen(out, [&](auto o) {
            o = base;
            o.noalias() += scaling() * (b_ * a_);
        });
    }

    /// Adapter gradients from the gradient G of the effective weight (exact, by the chain rule).
    void gradients(MatrixView<const float> grad_weight, Matrix& grad_a, Matrix& grad_b) const {
        require_shape(grad_weight, rows(), cols(), "gradient of the adapted weight");
        grad_b.resize(rows(), rank());
        grad_a.resize(rank(), cols());
        detail::with_eigen(grad_weight, [&](auto g) {
            grad_b.noalias() = scaling() * (g * a_.transpose());
            grad_a.noalias() = scaling() * (b_.transpose() * g);
        });
    }

    /// base += scaling * B A: folds the adapter into the clean weight (then re-initialize to keep training).
    void merge_into(Matrix& base) const {
        require(base.rows() == rows() && base.cols() == cols(), "LoRA merge: base must be ", rows(), " x ", cols(), ", got ",
                base.rows(), " x ", base.cols());
        base.noalias() += scaling() * (b_ * a_);
    }

private:
    LoraOptions options_{};
    Matrix a_;
    Matrix b_;
};

}  // namespace npft::train
