#pragma once
// The result of outlier selection for one weight matrix: the set of selected positions, stored sorted.
#include <algorithm>
#include <cstddef>
#include <iterator>
#include <vector>

#include "../core/checked_math.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"

namespace npft::outliers {

/// Selected positions of a rows x cols matrix, as sorted unique flat indices r * cols + c (row-major, whatever the
/// memory layout of the weights). Sorted order keeps each row's outliers contiguous, which the noise policies rely on.
struct OutlierMask {
    Index rows = 0, cols = 0;
    std::vector<Index> positions;

    OutlierMask() = default;
    /// Sorts and de-duplicates `positions`; throws if one lies outside the matrix.
    OutlierMask(Index rows_, Index cols_, std::vector<Index> positions_)
        : rows(rows_), cols(cols_), positions(std::move(positions_)) {
        require(rows >= 0 && cols >= 0, "mask shape must be non-negative, got ", rows, " x ", cols);
        std::sort(positions.begin(), positions.end());
        positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
        require(positions.empty() || (positions.front() >= 0 && positions.back() < rows * cols), "mask position ",
                positions.empty() ? 0 : (positions.front() < 0 ? positions.front() : positions.back()),
                " lies outside the ", rows, " x ", cols, " matrix (expected 0 <= position < ", rows * cols, ")");
    }

    /// Throws unless the mask is well formed: a non-negative shape and positions strictly ascending (sorted, unique)
    /// in [0, rows * cols). The constructor guarantees it; a mask assembled field by field must pass it before use,
    /// since consumers rely on the order (an unsorted mask would put outliers in the wrong rows).
    void validate() const {
        require(rows >= 0 && cols >= 0, "mask shape must be non-negative, got ", rows, " x ", cols);
        const Index total = mul_or_fail(rows, cols, "outlier mask of ", rows, " x ", cols);
        for (std::size_t i = 0; i < positions.size(); ++i) {
            const Index p = positions[i];
            require(p >= 0 && p < total, "mask position ", p, " (entry ", i, ") lies outside the ", rows, " x ", cols,
                    " matrix (expected 0 <= position < ", total, ")");
            if (i == 0) continue;  // require() evaluates its message arguments, so positions[i - 1] needs i > 0 first
            require(positions[i - 1] < p, "mask positions must be sorted and unique, but entry ", i, " (", p,
                    ") follows ", positions[i - 1]);
        }
    }

    Index count() const { return static_cast<Index>(positions.size()); }
    Index size() const { return rows * cols; }
    /// Selected share of the matrix, in [0, 1] (0 for an empty matrix).
    double fraction() const { return size() == 0 ? 0.0 : static_cast<double>(count()) / static_cast<double>(size()); }
    bool contains(Index r, Index c) const {
        if (r < 0 || r >= rows || c < 0 || c >= cols) return false;
        return std::binary_search(positions.begin(), positions.end(), r * cols + c);
    }
    Index row_of(Index position) const { return position / cols; }
    Index col_of(Index position) const { return position % cols; }

    /// The mask as a dense row-major 0/1 vector of rows * cols floats (e.g. to restrict a Hessian trace to it).
    std::vector<float> indicator() const {
        std::vector<float> out(static_cast<std::size_t>(size()), 0.0f);
        for (const Index p : positions) out[static_cast<std::size_t>(p)] = 1.0f;
        return out;
    }

    friend bool operator==(const OutlierMask&, const OutlierMask&) = default;
};

/// Positions selected by either mask. Both must describe the same shape.
inline OutlierMask mask_union(const OutlierMask& a, const OutlierMask& b) {
    require(a.rows == b.rows && a.cols == b.cols, "cannot unite outlier masks of different shapes: ", a.rows, " x ", a.cols,
            " and ", b.rows, " x ", b.cols);
    OutlierMask out;
    out.rows = a.rows;
    out.cols = a.cols;
    out.positions.reserve(a.positions.size() + b.positions.size());
    std::set_union(a.positions.begin(), a.positions.end(), b.positions.begin(), b.positions.end(),
                   std::back_inserter(out.positions));
    return out;
}

inline OutlierMask operator|(const OutlierMask& a, const OutlierMask& b) { return mask_union(a, b); }

}  // namespace npft::outliers
