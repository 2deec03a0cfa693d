#pragma once
/// \file eigen.hpp
/// Adapters from Eigen matrices, Arrays, Maps, Refs, Blocks and Tensors to
/// psap views, without copies.
///
/// Dense 2-D objects: row i is filter i, column j is fan-in element j, for
/// either storage order and any inner/outer stride.
/// Tensors (Eigen::Tensor, TensorFixedSize, TensorMap) of rank R >= 2:
/// dimension 0 indexes filters; dimensions 1..R-1 are flattened into the
/// fan-in in storage order, so a conv weight (N, C, kh, kw) becomes N filters
/// of C*kh*kw values with fan-in index
///   row-major:    j = (c*kh + y)*kw + x   (fan-in contiguous, filters K apart)
///   column-major: j = c + C*(y + kh*x)    (filters adjacent, fan-in N apart).
/// The view aliases the object's storage: it must not outlive it, and an
/// owning temporary (a Matrix or Tensor rvalue) is rejected at compile time.

#include <psap/error.hpp>
#include <psap/tensor/concepts.hpp>
#include <psap/tensor/view.hpp>

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#include <concepts>
#include <type_traits>

namespace psap {

namespace detail {
template <class D>
concept eigen_direct_dense = std::is_base_of_v<Eigen::DenseBase<std::remove_cvref_t<D>>, std::remove_cvref_t<D>> &&
                             (int(std::remove_cvref_t<D>::Flags) & Eigen::DirectAccessBit) != 0;

template <class X>
struct is_eigen_tensor_storage : std::false_type {};
template <class S, int R, int O, class I>
struct is_eigen_tensor_storage<Eigen::Tensor<S, R, O, I>> : std::true_type {};
template <class S, class Dims, int O, class I>
struct is_eigen_tensor_storage<Eigen::TensorFixedSize<S, Dims, O, I>> : std::true_type {};
template <class P, int O, template <class> class MP>
struct is_eigen_tensor_storage<Eigen::TensorMap<P, O, MP>> : std::true_type {};

/// Tensors with their own contiguous storage (not expressions, not TensorRef).
template <class Tn>
concept eigen_tensor = is_eigen_tensor_storage<std::remove_cvref_t<Tn>>::value;

/// Eigen tensors that own their storage (a view of an rvalue one would dangle).
template <class X>
inline constexpr bool eigen_tensor_owning = false;
template <class S, int R, int O, class I>
inline constexpr bool eigen_tensor_owning<Eigen::Tensor<S, R, O, I>> = true;
template <class S, class Dims, int O, class I>
inline constexpr bool eigen_tensor_owning<Eigen::TensorFixedSize<S, Dims, O, I>> = true;

template <class D>
using eigen_elem = std::remove_pointer_t<decltype(std::declval<D&>().data())>;

/// Distance between (i, 0) and (i + 1, 0), and between (0, j) and (0, j + 1).
template <class D>
index eigen_row_stride(const D& m) {
    return (int(D::Flags) & Eigen::RowMajorBit) ? index(m.outerStride()) : index(m.innerStride());
}
template <class D>
index eigen_col_stride(const D& m) {
    return (int(D::Flags) & Eigen::RowMajorBit) ? index(m.innerStride()) : index(m.outerStride());
}
}  // namespace detail

/// Rows of an Eigen dense object with direct access (Matrix, Array, Map, Ref,
/// Block, Transpose) as filters: row i is filter i.
template <class D>
    requires detail::eigen_direct_dense<D>
auto filters(D&& m) {
    using T = detail::eigen_elem<D>;
    static_assert(std::floating_point<std::remove_cv_t<T>>,
                  "psap::filters: a filter_bank holds floating-point values (float or double); "
                  "this Eigen object's Scalar is not floating-point");
    static_assert(!(!std::is_lvalue_reference_v<D> &&
                    std::is_base_of_v<Eigen::PlainObjectBase<std::remove_cvref_t<D>>, std::remove_cvref_t<D>>),
                  "psap::filters: the argument is a temporary Eigen Matrix/Array; the view would dangle. "
                  "Pass the object that owns the weights (an lvalue)");
    using Plain = std::remove_cvref_t<D>;
    const Plain& p = m;
    return matrix_view<T>(m.data(), p.rows(), p.cols(), detail::eigen_row_stride(p), detail::eigen_col_stride(p));
}

/// An Eigen vector (one row or one column, at compile time or at run time) as
/// one value per channel.
template <class D>
    requires detail::eigen_direct_dense<D>
auto channels(D&& v) {
    using T = detail::eigen_elem<D>;
    static_assert(std::floating_point<std::remove_cv_t<T>>,
                  "psap::channels: a channel_vector holds floating-point values (float or double); "
                  "this Eigen object's Scalar is not floating-point");
    static_assert(!(!std::is_lvalue_reference_v<D> &&
                    std::is_base_of_v<Eigen::PlainObjectBase<std::remove_cvref_t<D>>, std::remove_cvref_t<D>>),
                  "psap::channels: the argument is a temporary Eigen Matrix/Array; the view would dangle. "
                  "Pass the object that owns the values (an lvalue)");
    using Plain = std::remove_cvref_t<D>;
    const Plain& p = v;
    if (p.rows() != 1 && p.cols() != 1)
        detail::fail("psap::channels: expected an Eigen vector, got a ", p.rows(), " x ", p.cols(),
                     " matrix; pass one row or column (e.g. m.col(0))");
    // A column steps along rows, a row along columns; a single value has no step.
    const index stride = p.size() <= 1 ? 1 : p.cols() == 1 ? detail::eigen_row_stride(p) : detail::eigen_col_stride(p);
    return vector_view<T>(v.data(), p.size(), stride);
}

/// An Eigen::Tensor, TensorFixedSize or TensorMap of rank >= 2 as filters:
/// dimension 0 indexes filters, dimensions 1..R-1 form the fan-in (see above).
template <class Tn>
    requires detail::eigen_tensor<Tn>
auto filters(Tn&& t) {
    using Plain = std::remove_cvref_t<Tn>;
    using T = detail::eigen_elem<Tn>;
    constexpr int rank = Plain::NumIndices;
    static_assert(rank >= 2,
                  "psap::filters: an Eigen tensor needs rank >= 2 (filters x fan-in...); "
                  "use psap::channels for a rank-1 tensor");
    static_assert(std::floating_point<std::remove_cv_t<T>>,
                  "psap::filters: a filter_bank holds floating-point values (float or double); "
                  "this Eigen tensor's Scalar is not floating-point");
    static_assert(std::is_lvalue_reference_v<Tn> || !detail::eigen_tensor_owning<Plain>,
                  "psap::filters: the argument is a temporary Eigen::Tensor; the view would dangle. "
                  "Pass the tensor that owns the weights (an lvalue)");
    const index n = t.dimension(0);
    index k = 1;
    for (int i = 1; i < rank; ++i) k *= t.dimension(i);
    // Row-major: filter i starts at i*K, fan-in contiguous. Column-major: the
    // filter index is the fastest, so the fan-in has stride N.
    if constexpr (int(Plain::Layout) == int(Eigen::RowMajor))
        return matrix_view<T>(t.data(), n, k, k, 1);
    else
        return matrix_view<T>(t.data(), n, k, 1, n);
}

/// A rank-1 Eigen::Tensor, TensorFixedSize or TensorMap as one value per channel.
template <class Tn>
    requires(detail::eigen_tensor<Tn> && std::remove_cvref_t<Tn>::NumIndices == 1)
auto channels(Tn&& t) {
    using T = detail::eigen_elem<Tn>;
    static_assert(std::floating_point<std::remove_cv_t<T>>,
                  "psap::channels: a channel_vector holds floating-point values (float or double); "
                  "this Eigen tensor's Scalar is not floating-point");
    static_assert(std::is_lvalue_reference_v<Tn> || !detail::eigen_tensor_owning<std::remove_cvref_t<Tn>>,
                  "psap::channels: the argument is a temporary Eigen::Tensor; the view would dangle. "
                  "Pass the tensor that owns the values (an lvalue)");
    return vector_view<T>(t.data(), t.dimension(0));
}

}  // namespace psap
