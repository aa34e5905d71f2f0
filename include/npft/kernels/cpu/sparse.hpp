#pragma once
// The sparse half of a dense-and-sparse product: fp16 outliers in CSR form added to y = x W^T. Outliers are few
// (well under 1% of the weights) and scattered, so a scalar loop over each row's entries is the right kernel; its
// cost is the latency of the scattered activation reads, which is what removing outliers (NPFT) saves.
#include <cstdint>

#include "../../core/config.hpp"
#include "../../core/dtype.hpp"
#include "../../core/error.hpp"
#include "../../core/tensor_view.hpp"

namespace npft::kernels::cpu {

/// A non-owning view of CSR outliers: row r's entries are [row_offsets[r], row_offsets[r + 1]) of columns/values.
struct CsrView {
    Index rows = 0;
    Index cols = 0;
    const std::int32_t* row_offsets = nullptr;  ///< rows + 1 entries, non-decreasing, from 0
    const std::int32_t* columns = nullptr;      ///< column of each entry, in [0, cols)
    const half* values = nullptr;               ///< fp16 value of each entry
    Index nonzeros() const { return rows == 0 ? 0 : row_offsets[rows]; }
};

/// Throws unless the view is a well-formed CSR matrix of the given shape: offsets from 0, non-decreasing, columns in
/// [0, cols) and strictly ascending within each row (O(nonzeros)). After it, add_sparse_rows reads only
/// row_offsets[0 .. rows] and entries [0, row_offsets[rows]).
inline void require_valid_csr(const CsrView& s, Index rows, Index cols) {
    require(s.rows == rows && s.cols == cols, "sparse outliers must be ", rows, " x ", cols, " (the dense weights' shape), got ",
            s.rows, " x ", s.cols);
    require(s.row_offsets != nullptr && s.row_offsets[0] == 0, "sparse outliers: row_offsets must start at 0");
    for (Index r = 0; r < rows; ++r)
        require(s.row_offsets[r] <= s.row_offsets[r + 1], "sparse outliers: row_offsets must be non-decreasing, but row ", r,
                " runs from ", s.row_offsets[r], " to ", s.row_offsets[r + 1]);
    require(s.nonzeros() == 0 || (s.columns != nullptr && s.values != nullptr), "sparse outliers: ", s.nonzeros(),
            " entries but a null columns or values array");
    for (Index r = 0; r < rows; ++r) {
        for (Index e = s.row_offsets[r]; e < s.row_offsets[r + 1]; ++e) {
            require(s.columns[e] >= 0 && s.columns[e] < cols, "sparse outliers: column ", s.columns[e], " of entry ", e, " (row ",
                    r, ") is outside [0, ", cols, ")");
            if (e == s.row_offsets[r]) continue;  // require() evaluates its message arguments: columns[e - 1] needs this
            require(s.columns[e - 1] < s.columns[e], "sparse outliers: columns of row ", r,
                    " must be strictly ascending, but entry ", e, " has column ", s.columns[e], " after ", s.columns[e - 1]);
        }
    }
}

/// y[m][r] += sum over row r's entries e of values[e] * x[m][columns[e]], for rows [row_begin, row_end), in entry
/// order. x rows are contiguous: row m starts at x + m * x_row_stride.
inline void add_sparse_rows(const CsrView& s, const float* x, Index x_row_stride, Index batch, MatrixView<float> y,
                            Index row_begin, Index row_end) {
    for (Index r = row_begin; r < row_end; ++r) {
        const Index begin = s.row_offsets[r];
        const Index end = s.row_offsets[r + 1];
        if (begin == end) continue;
        for (Index m = 0; m < batch; ++m) {
            const float* xm = x + m * x_row_stride;
            float sum = 0.0f;
            for (Index e = begin; e < end; ++e) sum += static_cast<float>(s.values[e]) * xm[s.columns[e]];
            y(m, r) += sum;
        }
    }
}

}  // namespace npft::kernels::cpu
