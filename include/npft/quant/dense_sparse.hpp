#pragma once
// Dense-and-sparse decomposition (SqueezeLLM): a few outlier weights are kept in fp16 in a CSR matrix, and the rest is
// quantized by any quantizer. The baseline NPFT claims to make unnecessary.
//
//   auto mask  = npft::outliers::TopFisher{0.0045}.select({weights, fisher});      // 0.45% by sensitivity
//   auto split = npft::quant::split_dense_sparse(weights, mask, Uniform<3>{}, fisher);
//   Matrix w_hat = split.dequantize();                                             // dense + sparse
//
// What the dense part sees: the outliers are set to 0 and their importance to 0 before it is quantized, so they
// neither stretch a uniform range nor pull a k-means centroid (the range shrinks, which is the point of the method).
// What the sparse part stores: the correction w - dense(r, c) in fp16, so that dense + sparse reproduces each outlier
// to fp16 precision whatever the dense grid. Zero is a level of every uniform grid, so there dense(r, c) = 0 and the
// stored value is exactly fp16(w); for a LUT without a 0 level it also absorbs the level nearest 0.
#include <concepts>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "../outliers/outlier_mask.hpp"
#include "../outliers/selector.hpp"
#include "grid.hpp"
#include "quantized_matrix.hpp"
#include "quantizer.hpp"

namespace npft::quant {

/// fp16 outliers of a rows x cols matrix in CSR form: row r holds values[row_offsets[r] .. row_offsets[r+1]) at
/// columns[same range], columns ascending within a row.
struct SparseOutliers {
    Index rows = 0, cols = 0;
    std::vector<std::int32_t> row_offsets;  ///< rows + 1 entries, row_offsets[0] = 0, row_offsets[rows] = nnz
    std::vector<std::int32_t> columns;      ///< nnz column indices
    std::vector<half> values;               ///< nnz fp16 values

    Index nnz() const { return static_cast<Index>(values.size()); }
    /// Storage: 2 bytes per value, 4 per column index, 4 per row offset (rows + 1 of them).
    std::size_t bytes() const {
        return values.size() * sizeof(half) + columns.size() * sizeof(std::int32_t) + row_offsets.size() * sizeof(std::int32_t);
    }

    /// out += this (out must be rows x cols). Validates the structure first (O(nnz)), so it never writes out of range.
    void add_to(Matrix& out) const {
        validate();
        require(out.rows() == rows && out.cols() == cols, "SparseOutliers::add_to: output must be ", rows, " x ", cols, ", got ",
                out.rows(), " x ", out.cols());
        for (Index r = 0; r < rows; ++r)
            for (std::int32_t k = row_offsets[static_cast<std::size_t>(r)]; k < row_offsets[static_cast<std::size_t>(r + 1)]; ++k)
                out(r, columns[static_cast<std::size_t>(k)]) += static_cast<float>(values[static_cast<std::size_t>(k)]);
    }

    /// Checks the CSR structure (call after loading from a file).
    void validate() const {
        require(rows >= 0 && cols >= 0 && cols <= std::numeric_limits<std::int32_t>::max(),
                "sparse outlier shape must be non-negative with cols < 2^31, got ", rows, " x ", cols);
        require(row_offsets.size() == static_cast<std::size_t>(rows + 1), "CSR row_offsets must have rows + 1 = ", rows + 1,
                " entries, got ", row_offsets.size());
        require(columns.size() == values.size(), "CSR columns and values must have the same length, got ", columns.size(),
                " and ", values.size());
        require(row_offsets.front() == 0 && static_cast<std::size_t>(row_offsets.back()) == values.size(),
                "CSR row_offsets must start at 0 and end at nnz = ", values.size());
        // All offsets first: with the first 0 and the last nnz, monotone offsets keep every row's entries in range.
        for (Index r = 0; r < rows; ++r) {
            const std::int32_t begin = row_offsets[static_cast<std::size_t>(r)], end = row_offsets[static_cast<std::size_t>(r + 1)];
            require(begin <= end, "CSR row_offsets must be non-decreasing, but row ", r, " runs from ", begin, " to ", end);
        }
        for (Index r = 0; r < rows; ++r) {
            const std::int32_t begin = row_offsets[static_cast<std::size_t>(r)], end = row_offsets[static_cast<std::size_t>(r + 1)];
            for (std::int32_t k = begin; k < end; ++k) {
                const std::int32_t c = columns[static_cast<std::size_t>(k)];
                require(c >= 0 && c < cols, "CSR column ", c, " in row ", r, " lies outside [0, ", cols, ")");
                require(k == begin || columns[static_cast<std::size_t>(k - 1)] < c, "CSR columns of row ", r,
                        " must be strictly ascending");
                const float v = static_cast<float>(values[static_cast<std::size_t>(k)]);
                require(v - v == 0.0f, "CSR value at (", r, ", ", c, ") is not finite");
            }
        }
    }
};

/// A quantized dense part plus fp16 outliers; the weight matrix it stands for is dense + sparse.
struct DenseSparseMatrix {
    QuantizedMatrix dense;
    SparseOutliers sparse;

    Index rows() const { return dense.rows(); }
    Index cols() const { return dense.cols(); }

    /// The represented matrix in fp32: dequantized dense part plus the outliers.
    Matrix dequantize() const {
        Matrix out = dense.dequantize();
        sparse.add_to(out);
        return out;
    }
    /// Both parts: packed codes and metadata of the dense part, plus values, column indices and row offsets.
    std::size_t bytes() const { return dense.bytes() + sparse.bytes(); }
    /// Storage bits per weight, the sparse part included.
    double bits_per_weight() const { return 8.0 * static_cast<double>(bytes()) / static_cast<double>(rows() * cols()); }
    /// Share of weights held by the sparse part.
    double outlier_fraction() const { return static_cast<double>(sparse.nnz()) / static_cast<double>(rows() * cols()); }

    void validate() const {
        dense.validate();
        sparse.validate();
        require(sparse.rows == dense.rows() && sparse.cols == dense.cols(), "sparse outliers must be ", dense.rows(), " x ",
                dense.cols(), " like the dense part, got ", sparse.rows, " x ", sparse.cols);
    }
};

/// Anything that quantizes a weight matrix given per-weight importance (empty or of the same shape): e.g.
/// `[&](auto w, auto imp) { return gptq.quantize(w, hessian, imp); }`.
template <class Q>
concept DenseQuantizer = requires(const Q& q, MatrixView<const float> weights, MatrixView<const float> importance) {
    { q(weights, importance) } -> std::same_as<QuantizedMatrix>;
};

/// Splits `weights` into a dense part quantized by `quantize` and the outliers of `mask` in fp16 CSR (see the file
/// comment for what each part holds). `importance` (same shape, or empty) is passed to the quantizer with the outlier
/// positions set to 0. Throws if an outlier's correction overflows fp16.
template <DenseQuantizer Q>
DenseSparseMatrix split_dense_sparse(MatrixView<const float> weights, const outliers::OutlierMask& mask, const Q& quantize,
                                     MatrixView<const float> importance = {}) {
    require_non_empty(weights, "split_dense_sparse: weights");
    require_finite(weights, "split_dense_sparse: weights");
    const Index rows = weights.rows(), cols = weights.cols();
    require(mask.rows == rows && mask.cols == cols, "split_dense_sparse: the outlier mask must be ", rows, " x ", cols,
            " like the weights, got ", mask.rows, " x ", mask.cols);
    mask.validate();  // sorted, unique, in range: the CSR below is built in mask order
    require(cols <= std::numeric_limits<std::int32_t>::max() && mask.count() <= std::numeric_limits<std::int32_t>::max(),
            "split_dense_sparse: CSR uses 32-bit indices; got ", cols, " columns and ", mask.count(), " outliers");
    if (!importance.empty()) {
        require_shape(importance, rows, cols, "split_dense_sparse: importance");
        require_finite(importance, "split_dense_sparse: importance");
    }

    Matrix dense_weights = to_eigen(weights);
    Matrix dense_importance = importance.empty() ? Matrix::Ones(rows, cols) : Matrix(to_eigen(importance));
    for (const Index p : mask.positions) {
        dense_weights(p / cols, p % cols) = 0.0f;
        dense_importance(p / cols, p % cols) = 0.0f;
    }
    DenseSparseMatrix out;
    out.dense = quantize(MatrixView<const float>(as_matrix_view(dense_weights)),
                         mask.positions.empty() && importance.empty() ? MatrixView<const float>{}
                                                                      : MatrixView<const float>(as_matrix_view(dense_importance)));
    require(out.dense.rows() == rows && out.dense.cols() == cols, "split_dense_sparse: the quantizer returned a ",
            out.dense.rows(), " x ", out.dense.cols(), " matrix for ", rows, " x ", cols, " weights");

    SparseOutliers& s = out.sparse;
    s.rows = rows;
    s.cols = cols;
    s.row_offsets.assign(static_cast<std::size_t>(rows + 1), 0);
    s.columns.reserve(mask.positions.size());
    s.values.reserve(mask.positions.size());
    for (const Index p : mask.positions) {  // sorted row-major: CSR order
        const Index r = p / cols, c = p % cols;
        const float correction = weights(r, c) - out.dense.dequantize_at(r, c);
        const half stored(correction);
        require(static_cast<float>(stored) - static_cast<float>(stored) == 0.0f, "split_dense_sparse: outlier (", r, ", ", c,
                ") = ", weights(r, c), " overflows fp16");
        s.columns.push_back(static_cast<std::int32_t>(c));
        s.values.push_back(stored);
        ++s.row_offsets[static_cast<std::size_t>(r + 1)];
    }
    for (Index r = 0; r < rows; ++r) s.row_offsets[static_cast<std::size_t>(r + 1)] += s.row_offsets[static_cast<std::size_t>(r)];
    return out;
}

/// The dense part rounded to nearest on `grid` (RTN, Quantizer<G>).
template <Grid G>
DenseSparseMatrix split_dense_sparse(MatrixView<const float> weights, const outliers::OutlierMask& mask, const G& grid,
                                     MatrixView<const float> importance = {}) {
    const Quantizer<G> rtn(grid);
    return split_dense_sparse(
        weights, mask, [&](MatrixView<const float> w, MatrixView<const float> imp) { return rtn.quantize(w, imp); }, importance);
}

/// Selects the outliers with `selector` (e.g. outliers::TopMagnitude{0.0005}, outliers::TopFisher{0.0045}) from the
/// weights and `fisher` (empty unless the selector needs it), then splits. A selector that needs quantization steps gets
/// those of `grid`.
template <outliers::OutlierSelector S, Grid G>
DenseSparseMatrix split_dense_sparse(MatrixView<const float> weights, const S& selector, const G& grid,
                                     MatrixView<const float> fisher = {}) {
    Matrix steps;
    outliers::SelectionInputs inputs{weights, fisher, {}};
    if constexpr (S::needs_quant_steps) {
        require_non_empty(weights, "split_dense_sparse: weights");
        steps = quantization_steps(grid, weights, fisher);
        inputs.quant_steps = as_matrix_view(std::as_const(steps));
    }
    return split_dense_sparse(weights, selector.select(inputs), grid, fisher);
}

}  // namespace npft::quant
