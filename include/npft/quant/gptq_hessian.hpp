#pragma once
// The layer Hessian of GPTQ's proxy objective ||(W - Q) X||^2, accumulated from calibration inputs streamed in batches.
// Memory is bounded by the input dimension only: the running sum of x x^T (double) plus one float scratch matrix,
// whatever the number of tokens.
#include <Eigen/Core>
#include <cstdint>

#include "../core/dtype.hpp"
#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/tensor_view.hpp"

namespace npft::quant {

/// H = (2 / N) sum over the N calibration tokens x of x x^T, for one linear layer of `in_features` inputs.
/// Each batch is `tokens x in_features` (one row per token, as activations are laid out); any storage element type.
/// Each batch's X^T X is one float rank-k update (Eigen's SYRK-style kernel, half the flops of a full GEMM); the
/// batches are summed in double so that the sum over hundreds of thousands of tokens keeps its precision.
class GptqHessian {
public:
    explicit GptqHessian(Index in_features) : in_features_(in_features) {
        require(in_features > 0, "GptqHessian: in_features must be positive, got ", in_features);
        sum_.setZero(in_features, in_features);
    }

    Index in_features() const { return in_features_; }
    /// Calibration tokens accumulated so far.
    std::int64_t tokens() const { return tokens_; }

    /// Adds a batch of calibration inputs (`tokens x in_features`). Non-finite inputs are rejected.
    template <StorageElement T>
    void add(MatrixView<const T> batch) {
        require(batch.cols() == in_features_, "GptqHessian::add: batch must have ", in_features_,
                " columns (in_features), got ", batch.rows(), " x ", batch.cols());
        if (batch.rows() == 0) return;
        require_finite(batch, "GptqHessian::add: batch");
        scratch_.setZero(in_features_, in_features_);
        if constexpr (std::same_as<std::remove_const_t<T>, float>) {
            if (batch.col_stride() == 1) {
                // Dense rows: Eigen reads the caller's memory directly.
                using Rows = Eigen::Map<const Matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
                const Rows x(batch.data(), batch.rows(), batch.cols(), Eigen::OuterStride<>(batch.row_stride()));
                accumulate(x);
                return;
            }
        }
        Matrix x(batch.rows(), batch.cols());
        for (Index r = 0; r < batch.rows(); ++r)
            for (Index c = 0; c < batch.cols(); ++c) x(r, c) = to_float(batch(r, c));
        accumulate(x);
    }

    template <MatrixViewable X>
    void add(const X& batch) {
        add(MatrixView<const typename decltype(as_matrix_view(batch))::element_type>(as_matrix_view(batch)));
    }

    /// Adds the sums of another accumulator over the same inputs (e.g. one per thread or per data shard).
    void merge(const GptqHessian& other) {
        require(other.in_features_ == in_features_, "GptqHessian::merge: in_features must be ", in_features_, ", got ",
                other.in_features_);
        sum_ += other.sum_;
        tokens_ += other.tokens_;
    }

    /// H = (2 / N) sum x x^T, symmetric, in_features x in_features. Requires at least one token.
    Eigen::MatrixXd matrix() const {
        require(tokens_ > 0, "GptqHessian::matrix: no calibration tokens were added");
        Eigen::MatrixXd h = sum_.selfadjointView<Eigen::Lower>();
        h *= 2.0 / static_cast<double>(tokens_);
        return h;
    }

    void reset() {
        sum_.setZero();
        tokens_ = 0;
    }

private:
    template <class Rows>
    void accumulate(const Rows& x) {
        // Lower triangle of X^T X only; matrix() mirrors it.
        scratch_.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose());
        sum_.triangularView<Eigen::Lower>() += scratch_.cast<double>();
        tokens_ += x.rows();
    }

    Index in_features_;
    std::int64_t tokens_ = 0;
    Eigen::MatrixXd sum_;      // lower triangle of sum x x^T
    Eigen::MatrixXf scratch_;  // one batch's X^T X
};

}  // namespace npft::quant
