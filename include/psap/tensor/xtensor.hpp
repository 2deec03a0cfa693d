#pragma once
/// \file xtensor.hpp
/// Adapters from xtensor containers, adaptors (xt::adapt) and strided views
/// (xt::view, xt::strided_view, xt::transpose) to psap views, without copies.
///
/// Dimension 0 indexes filters; dimensions 1..R-1 form the fan-in and must
/// collapse to one uniform stride. The fan-in is flattened in storage order:
/// for a row-major (N, C, kh, kw) weight j = (c*kh + y)*kw + x, for a
/// column-major one j = c + C*(y + kh*x) (the same rule as eigen.hpp).
/// An expression whose fan-in cannot be described by one stride (e.g. a view
/// that skips every other channel) raises psap::error: copy it first.
/// The view aliases the expression's storage: it must not outlive it, and an
/// owning temporary (an xarray / xtensor / xtensor_fixed rvalue) is rejected
/// at compile time.

#include <psap/error.hpp>
#include <psap/tensor/concepts.hpp>
#include <psap/tensor/strides.hpp>
#include <psap/tensor/view.hpp>

#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include <concepts>
#include <cstddef>
#include <type_traits>

namespace psap {

namespace detail {
/// An xtensor expression backed by strided memory: a container, an adaptor,
/// or a view that exposes data(), data_offset() and strides().
template <class E>
concept xtensor_strided = std::is_base_of_v<xt::xexpression<std::remove_cvref_t<E>>, std::remove_cvref_t<E>> &&
                          requires(E& e) {
                              e.data();
                              e.data_offset();
                              e.shape();
                              e.strides();
                              e.dimension();
                              typename std::remove_cvref_t<E>::value_type;
                          };

/// xtensor containers that own their storage (a view of an rvalue one would dangle).
template <class X>
inline constexpr bool xtensor_owning = false;
template <class EC, xt::layout_type L, class SC, class Tag>
inline constexpr bool xtensor_owning<xt::xarray_container<EC, L, SC, Tag>> = true;
template <class EC, std::size_t N, xt::layout_type L, class Tag>
inline constexpr bool xtensor_owning<xt::xtensor_container<EC, N, L, Tag>> = true;
template <class ET, class S, xt::layout_type L, bool SH, class Tag>
inline constexpr bool xtensor_owning<xt::xfixed_container<ET, S, L, SH, Tag>> = true;

}  // namespace detail

/// An xtensor container, adaptor or strided view of rank >= 2 as filters:
/// dimension 0 indexes filters, dimensions 1..R-1 form the fan-in.
template <class E>
    requires detail::xtensor_strided<E>
auto filters(E&& e) {
    using T = std::remove_pointer_t<decltype(e.data())>;
    static_assert(std::floating_point<std::remove_cv_t<T>>,
                  "psap::filters: a filter_bank holds floating-point values (float or double); "
                  "this xtensor expression's value_type is not floating-point");
    static_assert(std::is_lvalue_reference_v<E> || !detail::xtensor_owning<std::remove_cvref_t<E>>,
                  "psap::filters: the argument is a temporary xt::xarray / xt::xtensor / xt::xtensor_fixed; "
                  "the view would dangle. "
                  "Pass the container that owns the weights (an lvalue)");
    if (e.dimension() < 2)
        detail::fail("psap::filters: an xtensor expression needs rank >= 2 (filters x fan-in...), got rank ", e.dimension(),
                     "; use psap::channels for one value per channel");
    index k = 0;
    const index col_stride = detail::collapse_fan_in(e.shape(), e.strides(), k, "xtensor expression",
                                                      "copy it into a contiguous xt::xarray first (e.g. xt::xarray<float> w = expr;)");
    const index n = static_cast<index>(e.shape()[0]);
    index row_stride = static_cast<index>(e.strides()[0]);
    if (n <= 1) row_stride = k;  // xtensor reports stride 0 for a unit extent
    else if (row_stride == 0 && k > 0)
        detail::fail("psap::filters: the xtensor expression (", detail::describe_layout(e.shape(), e.strides()),
                     ") repeats one filter ", n, " times (stride 0 along dimension 0, e.g. a broadcast); "
                     "evaluate it into an xt::xarray first");
    return matrix_view<T>(e.data() + e.data_offset(), n, k, row_stride, col_stride);
}

/// A rank-1 xtensor container, adaptor or strided view as one value per channel.
template <class E>
    requires detail::xtensor_strided<E>
auto channels(E&& e) {
    using T = std::remove_pointer_t<decltype(e.data())>;
    static_assert(std::floating_point<std::remove_cv_t<T>>,
                  "psap::channels: a channel_vector holds floating-point values (float or double); "
                  "this xtensor expression's value_type is not floating-point");
    static_assert(std::is_lvalue_reference_v<E> || !detail::xtensor_owning<std::remove_cvref_t<E>>,
                  "psap::channels: the argument is a temporary xt::xarray / xt::xtensor / xt::xtensor_fixed; "
                  "the view would dangle. "
                  "Pass the container that owns the values (an lvalue)");
    if (e.dimension() != 1)
        detail::fail("psap::channels: expected a rank-1 xtensor expression (one value per channel), got rank ",
                     e.dimension(), " (", detail::describe_layout(e.shape(), e.strides()), ")");
    const index n = static_cast<index>(e.shape()[0]);
    const index stride = n > 1 ? static_cast<index>(e.strides()[0]) : 1;
    if (n > 1 && stride == 0)
        detail::fail("psap::channels: the xtensor expression repeats one value ", n,
                     " times (stride 0, e.g. a broadcast); evaluate it into an xt::xarray first");
    return vector_view<T>(e.data() + e.data_offset(), n, stride);
}

}  // namespace psap
