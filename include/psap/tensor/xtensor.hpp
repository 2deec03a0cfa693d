#pragma once
/// \file xtensor.hpp
/// Adapters from xtensor containers and adaptors (xarray, xtensor, adapt(...))
/// to psap views, without copies. Dimension 0 indexes filters; the remaining
/// dimensions must collapse to one uniform stride.

#include <psap/error.hpp>
#include <psap/tensor/view.hpp>

#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include <cstddef>
#include <type_traits>
#include <vector>

namespace psap {

namespace detail {
template <class E>
concept xtensor_strided = requires(E& e) {
    e.data();
    e.shape();
    e.strides();
    e.dimension();
    typename std::remove_cvref_t<E>::value_type;
    requires std::is_base_of_v<xt::xcontainer_semantic<std::remove_cvref_t<E>>, std::remove_cvref_t<E>> ||
                 requires { e.data_offset(); };
};

/// Stride of the fan-in after collapsing dims [1, rank), or fail with why.
template <class Shape, class Strides>
index collapse_fan_in(const Shape& shape, const Strides& strides, index& k) {
    std::vector<std::pair<index, index>> dims;  // (extent, stride), unit extents dropped
    k = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) {
        k *= static_cast<index>(shape[i]);
        if (shape[i] != 1) dims.emplace_back(static_cast<index>(shape[i]), static_cast<index>(strides[i]));
    }
    if (dims.empty()) return 1;
    auto uniform = [&](bool innermost_last) {
        const std::size_t n = dims.size();
        for (std::size_t a = 0; a + 1 < n; ++a) {
            const auto& outer = innermost_last ? dims[a] : dims[a + 1];
            const auto& inner = innermost_last ? dims[a + 1] : dims[a];
            if (outer.second != inner.second * inner.first) return false;
        }
        return true;
    };
    if (uniform(true)) return dims.back().second;
    if (uniform(false)) return dims.front().second;
    fail("psap::filters: the xtensor expression's dimensions 1..", shape.size() - 1,
         " cannot be viewed as one strided fan-in without a copy; copy it into a contiguous xt::xarray first");
}
}  // namespace detail

/// An xtensor container or adaptor of rank >= 2 as filters.
template <class E>
    requires detail::xtensor_strided<E>
auto filters(E&& e) {
    using T = std::remove_pointer_t<decltype(e.data())>;
    if (e.dimension() < 2)
        detail::fail("psap::filters: an xtensor expression needs rank >= 2 (filters x fan-in...), got rank ", e.dimension());
    index k = 0;
    const index col_stride = detail::collapse_fan_in(e.shape(), e.strides(), k);
    const index n = static_cast<index>(e.shape()[0]);
    const index row_stride = static_cast<index>(e.strides()[0]);
    T* base = e.data();
    if constexpr (requires { e.data_offset(); }) base += e.data_offset();
    return matrix_view<T>(base, n, k, n > 1 ? row_stride : k, col_stride);
}

/// A rank-1 xtensor container or adaptor as one value per channel.
template <class E>
    requires detail::xtensor_strided<E>
auto channels(E&& e) {
    using T = std::remove_pointer_t<decltype(e.data())>;
    if (e.dimension() != 1)
        detail::fail("psap::channels: expected a rank-1 xtensor expression, got rank ", e.dimension());
    T* base = e.data();
    if constexpr (requires { e.data_offset(); }) base += e.data_offset();
    return vector_view<T>(base, static_cast<index>(e.shape()[0]), e.shape()[0] > 1 ? static_cast<index>(e.strides()[0]) : 1);
}

}  // namespace psap
