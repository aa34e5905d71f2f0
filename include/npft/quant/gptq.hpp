#pragma once
// GPTQ (Frantar et al. 2022) as a rounding strategy over any Grid: columns are rounded one at a time, and each column's
// rounding error is spread onto the columns not yet rounded, so that the layer output error ||(W - Q) X||^2 stays small.
//
//   npft::quant::GptqHessian h(in_features);
//   for (const auto& batch : calibration) h.add(batch);            // tokens x in_features
//   auto q = npft::quant::Gptq<Uniform<4, 128>>{{}, {.act_order = true}}.quantize(weights, h);
//
// Precision: the Hessian is summed, dampened and Cholesky-factorized in double (where GPTQ can break down on an
// ill-conditioned H); the triangular inverse, the inverse factor and the weight updates are float (the O(cols^3) and
// O(rows cols^2) parts: float GEMM is twice as fast, and after dampening these steps are well conditioned).
#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "gptq_hessian.hpp"
#include "grid.hpp"
#include "quantized_matrix.hpp"
#include "quantizer.hpp"

namespace npft::quant {

/// When a group's quantization parameters are fitted (the group is always a contiguous range of inputs in the
/// canonical column order, so the packed format needs no per-column group index).
enum class GroupFit {
    /// When the first of the group's columns comes up in the quantization order, on the current (error-compensated)
    /// values of all its columns. Without act-order this is GPTQ's default; with act-order the group keeps its canonical
    /// columns (GPTQ's own act-order without static groups regroups consecutive columns of the permuted order instead,
    /// which needs a group index per column at inference).
    when_reached,
    /// All groups up front, on the original weights (GPTQ's `static_groups`).
    upfront,
};

struct GptqOptions {
    /// Dampening: damp_fraction * mean(diag H) is added to the diagonal (after dead columns are fixed).
    double damp_fraction = 0.01;
    /// Columns per lazy block update.
    Index block_size = 128;
    /// Quantize columns by decreasing diag H (most important inputs first) instead of left to right.
    bool act_order = false;
    GroupFit group_fit = GroupFit::when_reached;
};

namespace detail {

/// In-place inverse of a lower-triangular matrix by recursive 2x2 blocking, n^3/3 flops (a triangular solve against
/// the identity would spend n^3 on the zeros): inv([A 0; B C]) = [inv(A) 0; -inv(C) B inv(A)  inv(C)].
/// Only the lower triangle is read and written.
template <class Scalar>
void invert_lower_triangular(Eigen::Ref<Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>> l) {
    using Dense = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
    const Index n = l.rows();
    if (n <= 64) {
        const Dense inverse = l.template triangularView<Eigen::Lower>().solve(Dense::Identity(n, n));
        l.template triangularView<Eigen::Lower>() = inverse;
        return;
    }
    const Index h = n / 2;
    invert_lower_triangular<Scalar>(l.topLeftCorner(h, h));
    invert_lower_triangular<Scalar>(l.bottomRightCorner(n - h, n - h));
    const Dense b = -(l.bottomLeftCorner(n - h, h) * l.topLeftCorner(h, h).template triangularView<Eigen::Lower>());
    l.bottomLeftCorner(n - h, h).noalias() = l.bottomRightCorner(n - h, n - h).template triangularView<Eigen::Lower>() * b;
}

}  // namespace detail

/// GPTQ over a Grid. `quantize` takes weights (rows = outputs, cols = inputs) and the layer Hessian (cols x cols, e.g.
/// GptqHessian::matrix()) and returns a QuantizedMatrix in the canonical (unpermuted) column order.
///
/// Steps, as in the paper and its reference code:
///  1. dead inputs (diag H == 0) get diag 1 and their weight column is zeroed (they never contribute to the output);
///  2. with act_order, columns are ordered by decreasing diag H (ties: lower index first);
///  3. H += damp_fraction * mean(diag H) * I; U = upper Cholesky factor of H^-1 (H^-1 = U^T U);
///  4. for each column i in order: q = nearest grid level of w_i under its (row, group) parameters, and the remaining
///     columns k > i get w_k -= (w_i - q) U(i,k) / U(i,i). The updates are deferred (lazy batch updates): inside a
///     block of `block_size` columns a column receives its pending updates when it comes up (one GEMV), and at the
///     block's end all later columns receive them as one GEMM.
/// Groups: see GroupFit. A LUT grid (one table per row) is fitted once per row, on the row's original weights.
template <Grid G>
class Gptq {
public:
    using grid_type = G;
    using params_type = params_of<G>;

    Gptq() = default;
    explicit Gptq(G grid, GptqOptions options = {}) : grid_(std::move(grid)), options_(options) { check_options(); }

    const G& grid() const { return grid_; }
    const GptqOptions& options() const { return options_; }

    /// Quantizes `weights` (any MatrixViewable: npft views of float/half/bfloat16, Eigen matrices and maps) with the
    /// layer Hessian `hessian` (cols x cols; an Eigen double matrix or a GptqHessian). `importance` (same shape as the
    /// weights, or empty) is passed to the grid's fit, as Quantizer does.
    template <MatrixViewable W>
    QuantizedMatrix quantize(const W& weights, const Eigen::Ref<const Eigen::MatrixXd>& hessian,
                             MatrixView<const float> importance = {}) const {
        return run(MatrixView<const typename decltype(as_matrix_view(weights))::element_type>(as_matrix_view(weights)), hessian,
                   importance);
    }

    template <MatrixViewable W>
    QuantizedMatrix quantize(const W& weights, const GptqHessian& hessian, MatrixView<const float> importance = {}) const {
        return quantize(weights, hessian.matrix(), importance);
    }

private:
    template <StorageElement T>
    QuantizedMatrix run(MatrixView<const T> weights, const Eigen::Ref<const Eigen::MatrixXd>& hessian,
                        MatrixView<const float> importance) const {
        check_options();
        require_non_empty(weights, "Gptq::quantize: weights");
        require_finite(weights, "Gptq::quantize: weights");
        const Index rows = weights.rows(), cols = weights.cols();
        if (!importance.empty()) {
            require_shape(importance, rows, cols, "Gptq::quantize: importance");
            require_finite(importance, "Gptq::quantize: importance");
        }
        check_hessian(hessian, cols);
        const Index group = grid_.group_size(cols);
        const Index groups = cols / group;

        // 1. Dead inputs.
        Eigen::MatrixXd h = hessian;
        std::vector<bool> dead(static_cast<std::size_t>(cols), false);
        for (Index j = 0; j < cols; ++j) {
            if (h(j, j) == 0.0) {
                h(j, j) = 1.0;
                dead[static_cast<std::size_t>(j)] = true;
            }
        }

        // 2. Quantization order: order[p] is the canonical column quantized at position p.
        std::vector<Index> order(static_cast<std::size_t>(cols));
        std::iota(order.begin(), order.end(), Index{0});
        if (options_.act_order)
            std::stable_sort(order.begin(), order.end(), [&](Index a, Index b) { return h(a, a) > h(b, b); });

        // Weights in quantization order, column-major so that a column is contiguous.
        Eigen::MatrixXf w(rows, cols);
        for (Index p = 0; p < cols; ++p) {
            const Index j = order[static_cast<std::size_t>(p)];
            for (Index r = 0; r < rows; ++r) w(r, p) = dead[static_cast<std::size_t>(j)] ? 0.0f : to_float(weights(r, j));
        }

        // 3. Upper Cholesky factor of the damped inverse Hessian, in quantization order.
        const Eigen::MatrixXf u = inverse_cholesky_upper(h, order);

        QuantizedMatrix out(grid_.format(), grid_.bits(), rows, cols, group);
        std::vector<params_type> params(static_cast<std::size_t>(rows * groups));
        std::vector<bool> fitted(static_cast<std::size_t>(groups), false);
        std::vector<Index> position(static_cast<std::size_t>(cols));  // inverse of order
        for (Index p = 0; p < cols; ++p) position[static_cast<std::size_t>(order[static_cast<std::size_t>(p)])] = p;

        std::vector<float> values(static_cast<std::size_t>(group)), weights_of_values;
        if (!importance.empty()) weights_of_values.resize(values.size());
        Eigen::MatrixXf group_values(rows, group);
        // Fits group g of every row on the given (rows x group) values, canonical column order within the group.
        auto fit_group = [&](Index g) {
            for (Index r = 0; r < rows; ++r) {
                for (Index t = 0; t < group; ++t) {
                    values[static_cast<std::size_t>(t)] = group_values(r, t);
                    if (!importance.empty()) weights_of_values[static_cast<std::size_t>(t)] = importance(r, g * group + t);
                }
                const params_type p = detail::fit_group_at(grid_, std::span<const float>(values), std::span<const float>(weights_of_values), r, g);
                params[static_cast<std::size_t>(r * groups + g)] = p;
                detail::store_params(out, r, g, p);
            }
            fitted[static_cast<std::size_t>(g)] = true;
        };

        if (options_.group_fit == GroupFit::upfront) {
            for (Index g = 0; g < groups; ++g) {
                for (Index t = 0; t < group; ++t) group_values.col(t) = w.col(position[static_cast<std::size_t>(g * group + t)]);
                fit_group(g);
            }
        }

        // 4. Column by column, in blocks. Within a block the updates stay pending as the scaled errors `err` of the
        // block's columns: column p's current value is w.col(p) minus err * U(block rows, p), formed when needed (one
        // GEMV, reading instead of rewriting the rest of the block per column). At the block's end they are applied to
        // all later columns as one GEMM.
        const Index block = options_.block_size;
        Eigen::MatrixXf err(rows, std::min(block, cols));  // scaled errors (w - q) / U(i,i) of the current block
        Eigen::VectorXf current(rows);
        for (Index i1 = 0; i1 < cols; i1 += block) {
            const Index i2 = std::min(i1 + block, cols);
            for (Index i = i1; i < i2; ++i) {
                const Index done = i - i1;  // columns of this block already rounded
                const Index j = order[static_cast<std::size_t>(i)];
                const Index g = j / group;
                if (!fitted[static_cast<std::size_t>(g)]) {
                    for (Index t = 0; t < group; ++t) {
                        const Index p = position[static_cast<std::size_t>(g * group + t)];
                        group_values.col(t).noalias() = w.col(p) - err.leftCols(done) * u.col(p).segment(i1, done);
                    }
                    fit_group(g);
                }
                current.noalias() = w.col(i) - err.leftCols(done) * u.col(i).segment(i1, done);
                const float d = u(i, i);
                for (Index r = 0; r < rows; ++r) {
                    const params_type& p = params[static_cast<std::size_t>(r * groups + g)];
                    const std::uint32_t code = p.encode(current(r));
                    out.codes().set(r, j, code);
                    err(r, done) = (current(r) - p.decode(code)) / d;
                }
            }
            if (i2 < cols) w.rightCols(cols - i2).noalias() -= err.leftCols(i2 - i1) * u.block(i1, i2, i2 - i1, cols - i2);
        }
        return out;
    }

    void check_options() const {
        require(std::isfinite(options_.damp_fraction) && options_.damp_fraction >= 0.0,
                "GptqOptions::damp_fraction must be a finite non-negative number, got ", options_.damp_fraction);
        require(options_.block_size > 0, "GptqOptions::block_size must be positive, got ", options_.block_size);
    }

    static void check_hessian(const Eigen::Ref<const Eigen::MatrixXd>& h, Index cols) {
        require(h.rows() == cols && h.cols() == cols, "Gptq::quantize: hessian must be ", cols, " x ", cols,
                " (the weights' input dimension), got ", h.rows(), " x ", h.cols());
        double largest = 0.0;
        for (Index c = 0; c < cols; ++c) {
            for (Index r = 0; r < cols; ++r) {
                const double v = h(r, c);
                if (!std::isfinite(v)) fail("Gptq::quantize: hessian holds a non-finite value (", v, ") at (", r, ", ", c, ")");
                largest = std::max(largest, std::abs(v));
            }
        }
        for (Index j = 0; j < cols; ++j)
            require(h(j, j) >= 0.0, "Gptq::quantize: hessian diagonal must be non-negative, got ", h(j, j), " at ", j);
        for (Index c = 0; c < cols; ++c)
            for (Index r = c + 1; r < cols; ++r)
                require(std::abs(h(r, c) - h(c, r)) <= 1e-6 * largest, "Gptq::quantize: hessian must be symmetric, but H(", r,
                        ", ", c, ") = ", h(r, c), " and H(", c, ", ", r, ") = ", h(c, r));
    }

    /// U upper with U^T U = inverse of the damped, permuted H. With J the reversal permutation and J Hp J = L L^T,
    /// Hp^-1 = J L^-T L^-1 J, so U = J L^-1 J: one Cholesky and one triangular inverse (GPTQ's reference does three
    /// factorizations: cholesky, cholesky_inverse, cholesky). The Cholesky runs in double: it is where an ill-conditioned
    /// H breaks down, and the dampening margin must not be eaten by rounding. The inverse of L runs in float, the
    /// precision U is used in: its relative error is about cond(L) * 6e-8, and cond(L) = sqrt(cond(H)) is bounded by the
    /// dampening.
    Eigen::MatrixXf inverse_cholesky_upper(const Eigen::MatrixXd& h, const std::vector<Index>& order) const {
        const Index n = h.rows();
        const double damp = options_.damp_fraction * h.diagonal().mean();
        Eigen::MatrixXd reversed(n, n);  // J P^T H P J
        for (Index c = 0; c < n; ++c) {
            const Index jc = order[static_cast<std::size_t>(n - 1 - c)];
            for (Index r = 0; r < n; ++r) reversed(r, c) = h(order[static_cast<std::size_t>(n - 1 - r)], jc);
            reversed(c, c) += damp;
        }
        Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>> llt(reversed);  // factorizes in place: L in the lower triangle
        require(llt.info() == Eigen::Success, "Gptq::quantize: the hessian is not positive definite after dampening by ", damp,
                " (damp_fraction ", options_.damp_fraction,
                " of the mean diagonal); raise damp_fraction or check the calibration inputs");
        Eigen::MatrixXf l = reversed.cast<float>();
        detail::invert_lower_triangular<float>(l);
        Eigen::MatrixXf u = Eigen::MatrixXf::Zero(n, n);
        for (Index c = 0; c < n; ++c)
            for (Index r = 0; r <= c; ++r) u(r, c) = l(n - 1 - r, n - 1 - c);
        return u;
    }

    G grid_{};
    GptqOptions options_{};
};

}  // namespace npft::quant
