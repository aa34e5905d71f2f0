#pragma once
// Checks of the caller's activation and output views for the CPU kernels, so that every mistake a caller can make is
// an npft::Error before any kernel runs: negative or null views, an output whose elements are not distinct (stride 0,
// rows that overlap: each write would overwrite another), and an output that overlaps the input (the SIMD paths read x
// after writing y, so aliasing gives garbage, not a slower right answer).
//
// Overlap is judged per line: each view is a set of lines along its smaller stride, each line taken as the whole
// address interval it spans. That is exact for the usual layouts (row- or column-major, sub-blocks of one buffer, x and
// y as column ranges of one row-major buffer) and conservative for exotic interleavings, which are refused.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <utility>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/error.hpp"
#include "../../core/tensor_view.hpp"

namespace npft::kernels::cpu {

namespace detail {

// A view as `lines` lines of `length` elements: line i starts at first + i * line_stride, its elements step by
// element_stride (the smaller stride). Sizes of 1 contribute no stride.
struct Lines {
    std::intptr_t first = 0;  // byte address of element (0, 0)
    Index lines = 0, length = 0;
    std::intptr_t line_stride = 0, element_stride = 0;  // in bytes

    std::intptr_t line_begin(Index i) const {
        const std::intptr_t start = first + static_cast<std::intptr_t>(i) * line_stride;
        return std::min(start, start + static_cast<std::intptr_t>(length - 1) * element_stride);
    }
    std::intptr_t line_end(Index i, std::intptr_t element_bytes) const {  // one past the last byte
        const std::intptr_t start = first + static_cast<std::intptr_t>(i) * line_stride;
        return std::max(start, start + static_cast<std::intptr_t>(length - 1) * element_stride) + element_bytes;
    }
};

template <class T>
Lines as_lines(const MatrixView<T>& v) {
    const auto bytes = static_cast<std::intptr_t>(sizeof(T));
    Lines l;
    l.first = reinterpret_cast<std::intptr_t>(v.data());
    // The dimension with the smaller |stride| (or the only one longer than 1) runs along a line.
    const bool rows_are_lines = v.cols() > 1 && (v.rows() <= 1 || std::abs(v.col_stride()) <= std::abs(v.row_stride()));
    l.lines = rows_are_lines ? v.rows() : v.cols();
    l.length = rows_are_lines ? v.cols() : v.rows();
    l.line_stride = static_cast<std::intptr_t>(rows_are_lines ? v.row_stride() : v.col_stride()) * bytes;
    l.element_stride = static_cast<std::intptr_t>(rows_are_lines ? v.col_stride() : v.row_stride()) * bytes;
    return l;
}

// Whether some byte of a line of `a` lies in a line of `b` (sweep over the lines sorted by start).
inline bool lines_overlap(const Lines& a, const Lines& b, std::intptr_t element_bytes) {
    std::vector<std::pair<std::intptr_t, std::intptr_t>> ia, ib;
    for (Index i = 0; i < a.lines; ++i) ia.emplace_back(a.line_begin(i), a.line_end(i, element_bytes));
    for (Index i = 0; i < b.lines; ++i) ib.emplace_back(b.line_begin(i), b.line_end(i, element_bytes));
    std::ranges::sort(ia);
    std::ranges::sort(ib);
    std::size_t i = 0, j = 0;
    while (i < ia.size() && j < ib.size()) {
        if (ia[i].first < ib[j].second && ib[j].first < ia[i].second) return true;
        if (ia[i].second <= ib[j].second) ++i;
        else ++j;
    }
    return false;
}

}  // namespace detail

/// Throws unless `view` has non-negative sizes and, when non-empty, a non-null pointer. `what` names the argument.
template <StorageElement T>
void require_well_formed(const MatrixView<T>& view, const char* what) {
    require(view.rows() >= 0 && view.cols() >= 0, what, " has a negative shape: ", view.rows(), " x ", view.cols());
    require(view.empty() || view.data() != nullptr, what, " is a ", view.rows(), " x ", view.cols(), " view of a null pointer");
}

/// Throws unless every element of `view` is a distinct memory location: along a line (the smaller stride) the stride is
/// not 0, and consecutive lines start past the end of the previous one (no stride 0, no overlapping rows).
template <StorageElement T>
void require_distinct_elements(const MatrixView<T>& view, const char* what) {
    if (view.empty()) return;
    const detail::Lines l = detail::as_lines(view);
    const auto element = static_cast<std::intptr_t>(sizeof(T));
    require(l.length <= 1 || l.element_stride != 0, what, " (", view.rows(), " x ", view.cols(), ", strides ", view.row_stride(),
            ", ", view.col_stride(), ") has stride 0: all its elements along a line are one memory location");
    const std::intptr_t extent = std::abs(static_cast<std::intptr_t>(l.length - 1) * l.element_stride) + element;
    require(l.lines <= 1 || std::abs(l.line_stride) >= extent, what, " (", view.rows(), " x ", view.cols(), ", strides ",
            view.row_stride(), ", ", view.col_stride(),
            ") has overlapping rows or columns: an output element would be written twice");
}

/// The checks every multiply entry runs on its activations x and output y (see the file comment).
inline void require_multiply_views(const MatrixView<const float>& x, const MatrixView<float>& y) {
    require_well_formed(x, "x");
    require_well_formed(y, "y");
    require_distinct_elements(y, "y");
    if (x.empty() || y.empty()) return;
    const detail::Lines lx = detail::as_lines(x), ly = detail::as_lines(y);
    const auto element = static_cast<std::intptr_t>(sizeof(float));
    // Separate buffers (the usual case) are told apart by their address ranges alone; sorting lines handles the rest.
    const auto low = [&](const detail::Lines& l) { return std::min(l.line_begin(0), l.line_begin(l.lines - 1)); };
    const auto high = [&](const detail::Lines& l) { return std::max(l.line_end(0, element), l.line_end(l.lines - 1, element)); };
    if (low(lx) >= high(ly) || low(ly) >= high(lx)) return;
    require(!detail::lines_overlap(lx, ly, element), "y overlaps x: multiply writes y while it still reads x, so the output must ",
            "be separate memory (got x at ", static_cast<const void*>(x.data()), ", ", x.rows(), " x ", x.cols(), " and y at ",
            static_cast<const void*>(y.data()), ", ", y.rows(), " x ", y.cols(), ")");
}

}  // namespace npft::kernels::cpu
