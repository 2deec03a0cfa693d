#pragma once
/// \file eigen.hpp
/// Adapters from Eigen matrices, Maps, Refs, Blocks and Tensors to psap views,
/// without copies. A 4-D conv weight Tensor (N, C, kh, kw) becomes N filters
/// of C*kh*kw values; the fan-in order follows the tensor's storage order.

#include <psap/error.hpp>
#include <psap/tensor/view.hpp>

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#include <type_traits>

namespace psap {

namespace detail {
template <class D>
concept eigen_direct_dense = std::is_base_of_v<Eigen::DenseBase<std::remove_cvref_t<D>>, std::remove_cvref_t<D>> &&
                             (int(std::remove_cvref_t<D>::Flags) & Eigen::DirectAccessBit) != 0;

template <class Tn>
concept eigen_tensor_like = requires(Tn& t) {
    t.data();
    t.dimensions();
    typename std::remove_cvref_t<Tn>::Scalar;
    std::remove_cvref_t<Tn>::NumIndices;
    std::remove_cvref_t<Tn>::Layout;
};

template <class D>
using eigen_elem = std::remove_pointer_t<decltype(std::declval<D&>().data())>;
}  // namespace detail

/// Rows of an Eigen dense expression with direct access (Matrix, Array, Map,
/// Ref, Block) as filters: row i is filter i.
template <class D>
    requires detail::eigen_direct_dense<D>
auto filters(D&& m) {
    using T = detail::eigen_elem<D>;
    using Plain = std::remove_cvref_t<D>;
    const bool row_major = (int(Plain::Flags) & Eigen::RowMajorBit) != 0;
    const index inner = m.innerStride();
    const index outer = m.outerStride();
    return matrix_view<T>(m.data(), m.rows(), m.cols(), row_major ? outer : inner, row_major ? inner : outer);
}

/// An Eigen vector (one row or one column) as one value per channel.
template <class D>
    requires detail::eigen_direct_dense<D>
auto channels(D&& v) {
    using T = detail::eigen_elem<D>;
    if (v.rows() != 1 && v.cols() != 1)
        detail::fail("psap::channels: expected an Eigen vector, got a ", v.rows(), " x ", v.cols(),
                     " matrix; pass one row or column (e.g. m.col(0))");
    return vector_view<T>(v.data(), v.size(), v.innerStride());
}

/// An Eigen::Tensor or TensorMap of rank >= 2 as filters: dimension 0 indexes
/// filters, dimensions 1..R-1 are flattened into the fan-in.
template <class Tn>
    requires(detail::eigen_tensor_like<Tn> && !detail::eigen_direct_dense<Tn>)
auto filters(Tn&& t) {
    using Plain = std::remove_cvref_t<Tn>;
    using T = detail::eigen_elem<Tn>;
    constexpr int rank = Plain::NumIndices;
    static_assert(rank >= 2, "psap::filters: an Eigen tensor must have rank >= 2 (filters x fan-in...)");
    const auto& d = t.dimensions();
    index n = d[0];
    index k = 1;
    for (int i = 1; i < rank; ++i) k *= d[i];
    // Row-major: filter i starts at i*K, fan-in contiguous. Column-major: the
    // filter index is the fastest, so the fan-in has stride N.
    if constexpr (int(Plain::Layout) == int(Eigen::RowMajor))
        return matrix_view<T>(t.data(), n, k, k, 1);
    else
        return matrix_view<T>(t.data(), n, k, 1, n);
}

/// A rank-1 Eigen::Tensor or TensorMap as one value per channel.
template <class Tn>
    requires(detail::eigen_tensor_like<Tn> && !detail::eigen_direct_dense<Tn> && std::remove_cvref_t<Tn>::NumIndices == 1)
auto channels(Tn&& t) {
    using T = detail::eigen_elem<Tn>;
    return vector_view<T>(t.data(), t.dimension(0));
}

}  // namespace psap
