#pragma once
// Zero-copy interop between npft views and Eigen: Eigen matrices, Maps and Refs opt in to view_traits,
// and any float view is seen by Eigen as a strided Map.
#include <Eigen/Core>

#include "tensor_view.hpp"

namespace npft {

/// The owned dense matrix type used across npft: float, row-major (rows = output channels).
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;

/// An Eigen expression over a float MatrixView, sharing its memory (strides carried at run time).
template <class T>
    requires std::same_as<std::remove_const_t<T>, float>
auto to_eigen(const MatrixView<T>& v) {
    using Plain = std::conditional_t<std::is_const_v<T>, const Matrix, Matrix>;
    using Strides = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
    return Eigen::Map<Plain, Eigen::Unaligned, Strides>(v.data(), v.rows(), v.cols(), Strides(v.row_stride(), v.col_stride()));
}

/// An Eigen column vector over a float VectorView, sharing its memory.
template <class T>
    requires std::same_as<std::remove_const_t<T>, float>
auto to_eigen(const VectorView<T>& v) {
    using Plain = std::conditional_t<std::is_const_v<T>, const Vector, Vector>;
    return Eigen::Map<Plain, Eigen::Unaligned, Eigen::InnerStride<Eigen::Dynamic>>(v.data(), v.size(),
                                                                                   Eigen::InnerStride<Eigen::Dynamic>(v.stride()));
}

namespace detail {
template <class Derived>
auto eigen_matrix_view(Derived& m) {
    using Scalar = std::conditional_t<std::is_const_v<Derived>, const typename Derived::Scalar, typename Derived::Scalar>;
    Scalar* data = m.data();
    const Index outer = m.outerStride();
    const Index inner = m.innerStride();
    if constexpr (Derived::IsRowMajor) {
        return MatrixView<Scalar>(data, m.rows(), m.cols(), outer, inner);
    } else {
        return MatrixView<Scalar>(data, m.rows(), m.cols(), inner, outer);
    }
}
}  // namespace detail

/// Eigen dense matrices (owned, Map, Ref) of float are MatrixViewable. Vectors (one column at compile time) are VectorViewable.
template <class Scalar, int Rows, int Cols, int Options, int MaxRows, int MaxCols>
    requires(StorageElement<Scalar> && Cols != 1)
struct view_traits<Eigen::Matrix<Scalar, Rows, Cols, Options, MaxRows, MaxCols>> {
    template <class M>
    static auto view(M& m) {
        return detail::eigen_matrix_view(m);
    }
};
namespace detail {
/// The view of any direct-access Eigen expression (Map, Ref, Block). Constness follows `Plain` (the viewed matrix type),
/// not the expression object: a Map's or Block's own constness is shallow.
template <class Plain, class Expr>
auto direct_access_view(Expr& m) {
    using Scalar = std::conditional_t<std::is_const_v<Plain>, const typename Plain::Scalar, typename Plain::Scalar>;
    Scalar* data = const_cast<Scalar*>(m.data());
    const Index outer = m.outerStride();
    const Index inner = m.innerStride();
    if constexpr (std::remove_const_t<Plain>::IsRowMajor) {
        return MatrixView<Scalar>(data, m.rows(), m.cols(), outer, inner);
    } else {
        return MatrixView<Scalar>(data, m.rows(), m.cols(), inner, outer);
    }
}
}  // namespace detail

template <class Plain, int MapOptions, class Stride>
    requires(StorageElement<typename Plain::Scalar> && Plain::ColsAtCompileTime != 1)
struct view_traits<Eigen::Map<Plain, MapOptions, Stride>> {
    template <class M>
    static auto view(M& m) {
        return detail::direct_access_view<Plain>(m);
    }
};
template <class Plain, int RefOptions, class Stride>
    requires(StorageElement<typename Plain::Scalar> && Plain::ColsAtCompileTime != 1)
struct view_traits<Eigen::Ref<Plain, RefOptions, Stride>> {
    template <class M>
    static auto view(M& m) {
        return detail::direct_access_view<Plain>(m);
    }
};
/// Blocks of matrices with direct access (m.block(...), m.topRows(k), m.leftCols(k)...).
template <class Xpr, int BlockRows, int BlockCols, bool InnerPanel>
    requires(StorageElement<typename Xpr::Scalar> && BlockCols != 1 &&
             bool(Eigen::internal::traits<Eigen::Block<Xpr, BlockRows, BlockCols, InnerPanel>>::Flags & Eigen::DirectAccessBit))
struct view_traits<Eigen::Block<Xpr, BlockRows, BlockCols, InnerPanel>> {
    template <class M>
    static auto view(M& m) {
        using Plain = std::conditional_t<std::is_const_v<Xpr>, const typename Xpr::PlainObject, typename Xpr::PlainObject>;
        return detail::direct_access_view<Plain>(m);
    }
};
template <class Scalar, int Rows, int Options, int MaxRows>
    requires StorageElement<Scalar>
struct view_traits<Eigen::Matrix<Scalar, Rows, 1, Options, MaxRows, 1>> {
    template <class M>
    static auto view(M& m) {
        using S = std::conditional_t<std::is_const_v<M>, const Scalar, Scalar>;
        return VectorView<S>(m.data(), m.size(), 1);
    }
};

}  // namespace npft
