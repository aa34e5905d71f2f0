#pragma once
// Non-owning, strided views of rank 1 and 2 over float, half or bfloat16 storage.
// A view never allocates and never copies: it is a pointer, a shape and strides (in elements).
#include <type_traits>

#include "config.hpp"
#include "dtype.hpp"
#include "error.hpp"

namespace npft {

namespace detail {
// Out of line of the constructors, so that the check costs one compare in the inlined code.
[[noreturn]] inline void negative_view_shape(const char* kind, Index rows, Index cols) {
    fail(kind, " view shape must be non-negative, got ", rows, " x ", cols);
}
}  // namespace detail

/// Memory order of a dense matrix.
enum class Layout { row_major, col_major };

/// A strided vector view: element i lives at data[i * stride].
template <StorageElement T>
class VectorView {
public:
    using element_type = T;

    VectorView() = default;
    /// Throws npft::Error on a negative size (host code; device code cannot throw).
    NPFT_HOST_DEVICE VectorView(T* data, Index size, Index stride = 1) : data_(data), size_(size), stride_(stride) {
#if !defined(__CUDA_ARCH__)
        if (size < 0) detail::negative_view_shape("vector", 1, size);
#endif
    }

    /// A view of const elements converts implicitly from a mutable one.
    template <class U>
        requires(std::is_same_v<T, const U>)
    NPFT_HOST_DEVICE VectorView(const VectorView<U>& other) : VectorView(other.data(), other.size(), other.stride()) {}

    NPFT_HOST_DEVICE T* data() const { return data_; }
    NPFT_HOST_DEVICE Index size() const { return size_; }
    NPFT_HOST_DEVICE Index stride() const { return stride_; }
    NPFT_HOST_DEVICE bool empty() const { return size_ == 0; }
    NPFT_HOST_DEVICE bool is_contiguous() const { return stride_ == 1; }
    NPFT_HOST_DEVICE T& operator[](Index i) const { return data_[i * stride_]; }

private:
    T* data_ = nullptr;
    Index size_ = 0;
    Index stride_ = 1;
};

/// A strided matrix view: element (r, c) lives at data[r * row_stride + c * col_stride].
/// Convention across npft: rows are output channels, columns are inputs (y = W x with W of shape rows x cols).
template <StorageElement T>
class MatrixView {
public:
    using element_type = T;

    MatrixView() = default;
    /// Throws npft::Error on a negative shape (host code; device code cannot throw).
    NPFT_HOST_DEVICE MatrixView(T* data, Index rows, Index cols, Index row_stride, Index col_stride)
        : data_(data), rows_(rows), cols_(cols), row_stride_(row_stride), col_stride_(col_stride) {
#if !defined(__CUDA_ARCH__)
        if (rows < 0 || cols < 0) detail::negative_view_shape("matrix", rows, cols);
#endif
    }

    /// A dense view in the given memory order.
    NPFT_HOST_DEVICE static MatrixView dense(T* data, Index rows, Index cols, Layout layout = Layout::row_major) {
        return layout == Layout::row_major ? MatrixView(data, rows, cols, cols, 1) : MatrixView(data, rows, cols, 1, rows);
    }

    template <class U>
        requires(std::is_same_v<T, const U>)
    NPFT_HOST_DEVICE MatrixView(const MatrixView<U>& other)
        : MatrixView(other.data(), other.rows(), other.cols(), other.row_stride(), other.col_stride()) {}

    NPFT_HOST_DEVICE T* data() const { return data_; }
    NPFT_HOST_DEVICE Index rows() const { return rows_; }
    NPFT_HOST_DEVICE Index cols() const { return cols_; }
    NPFT_HOST_DEVICE Index size() const { return rows_ * cols_; }
    NPFT_HOST_DEVICE Index row_stride() const { return row_stride_; }
    NPFT_HOST_DEVICE Index col_stride() const { return col_stride_; }
    NPFT_HOST_DEVICE bool empty() const { return rows_ == 0 || cols_ == 0; }
    NPFT_HOST_DEVICE bool is_row_major_contiguous() const { return col_stride_ == 1 && (row_stride_ == cols_ || rows_ <= 1); }
    NPFT_HOST_DEVICE T& operator()(Index r, Index c) const { return data_[r * row_stride_ + c * col_stride_]; }

    NPFT_HOST_DEVICE VectorView<T> row(Index r) const { return VectorView<T>(data_ + r * row_stride_, cols_, col_stride_); }
    NPFT_HOST_DEVICE VectorView<T> col(Index c) const { return VectorView<T>(data_ + c * col_stride_, rows_, row_stride_); }
    /// The sub-matrix of `rows` x `cols` elements starting at (r0, c0).
    NPFT_HOST_DEVICE MatrixView block(Index r0, Index c0, Index rows, Index cols) const {
        return MatrixView(data_ + r0 * row_stride_ + c0 * col_stride_, rows, cols, row_stride_, col_stride_);
    }
    /// The same memory seen as the transposed matrix (no copy).
    NPFT_HOST_DEVICE MatrixView transposed() const { return MatrixView(data_, cols_, rows_, col_stride_, row_stride_); }

private:
    T* data_ = nullptr;
    Index rows_ = 0;
    Index cols_ = 0;
    Index row_stride_ = 0;
    Index col_stride_ = 1;
};

/// Customization point: specialize `view_traits<YourTensor>` with a static `view(YourTensor&)` returning a MatrixView
/// (or VectorView) to let npft see your type without a copy. core/eigen.hpp does this for Eigen types.
template <class T>
struct view_traits;

template <StorageElement T>
struct view_traits<MatrixView<T>> {
    static MatrixView<T> view(const MatrixView<T>& v) { return v; }
};
template <StorageElement T>
struct view_traits<VectorView<T>> {
    static VectorView<T> view(const VectorView<T>& v) { return v; }
};

namespace detail {
template <class V>
struct is_matrix_view : std::false_type {};
template <class T>
struct is_matrix_view<MatrixView<T>> : std::true_type {};
template <class V>
struct is_vector_view : std::false_type {};
template <class T>
struct is_vector_view<VectorView<T>> : std::true_type {};
}  // namespace detail

/// A type npft can see as a matrix: it has a view_traits specialization that returns a MatrixView.
template <class T>
concept MatrixViewable = requires(T& t) {
    { view_traits<std::remove_cvref_t<T>>::view(t) };
} && detail::is_matrix_view<decltype(view_traits<std::remove_cvref_t<T>>::view(std::declval<T&>()))>::value;

/// A type npft can see as a vector.
template <class T>
concept VectorViewable = requires(T& t) {
    { view_traits<std::remove_cvref_t<T>>::view(t) };
} && detail::is_vector_view<decltype(view_traits<std::remove_cvref_t<T>>::view(std::declval<T&>()))>::value;

/// The MatrixView of anything MatrixViewable.
template <MatrixViewable T>
auto as_matrix_view(T& t) {
    return view_traits<std::remove_cvref_t<T>>::view(t);
}
/// The VectorView of anything VectorViewable.
template <VectorViewable T>
auto as_vector_view(T& t) {
    return view_traits<std::remove_cvref_t<T>>::view(t);
}

/// Raw pointer + shape: the view of a dense row-major (or column-major) matrix. Throws on a null pointer or negative shape.
template <StorageElement T>
MatrixView<T> make_matrix_view(T* data, Index rows, Index cols, Layout layout = Layout::row_major) {
    require(rows >= 0 && cols >= 0, "matrix shape must be non-negative, got ", rows, " x ", cols);
    require(data != nullptr || rows * cols == 0, "matrix data pointer is null for a ", rows, " x ", cols, " matrix");
    return MatrixView<T>::dense(data, rows, cols, layout);
}

/// Throws unless `view` has the expected shape; `what` names the argument in the message.
template <StorageElement T>
void require_shape(const MatrixView<T>& view, Index rows, Index cols, const char* what) {
    require(view.rows() == rows && view.cols() == cols, what, " must be ", rows, " x ", cols, ", got ", view.rows(), " x ",
            view.cols());
}

/// Throws unless the view is non-empty; `what` names the argument.
template <StorageElement T>
void require_non_empty(const MatrixView<T>& view, const char* what) {
    require(!view.empty(), what, " is empty (", view.rows(), " x ", view.cols(), ")");
}

/// Throws if any element is NaN or Inf, naming the argument and the first bad position.
template <StorageElement T>
void require_finite(const MatrixView<T>& view, const char* what) {
    for (Index r = 0; r < view.rows(); ++r) {
        for (Index c = 0; c < view.cols(); ++c) {
            const float v = to_float(view(r, c));
            if (!(v - v == 0.0f)) fail(what, " holds a non-finite value (", v, ") at (", r, ", ", c, ")");
        }
    }
}

}  // namespace npft
