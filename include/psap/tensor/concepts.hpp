#pragma once
/// \file concepts.hpp
/// What psap needs from a tensor: a bank of N filters x K fan-in values
/// (filter_bank) and one value per channel (channel_vector), their archetypes,
/// and as_matrix_view / as_vector_view to turn any model into psap's views.

#include <psap/tensor/memory.hpp>
#include <psap/tensor/view.hpp>

#include <concepts>
#include <type_traits>

namespace psap {

/// A bank of rows() filters with cols() fan-in each, strided, in a memory space.
///
/// Semantics: element (i, j) lives at data() + i*row_stride() + j*col_stride();
/// the storage outlives every use of the bank by psap; the element type is a
/// floating-point type. matrix_view is the canonical model; adapters
/// (eigen.hpp, xtensor.hpp) turn user containers into it without copying.
template <class B>
concept filter_bank = requires(const B& b) {
    typename B::value_type;
    typename B::memory_type;
    { b.data() } -> std::convertible_to<const typename B::value_type*>;
    { b.rows() } -> std::convertible_to<index>;
    { b.cols() } -> std::convertible_to<index>;
    { b.row_stride() } -> std::convertible_to<index>;
    { b.col_stride() } -> std::convertible_to<index>;
} && std::floating_point<typename B::value_type> && memory_space<typename B::memory_type>;

/// A filter bank whose values can be written (pruning zeroes and restores rows).
template <class B>
concept mutable_filter_bank = filter_bank<B> && requires(const B& b) {
    { b.data() } -> std::same_as<typename B::value_type*>;
};

/// One value per channel (BN gamma/beta/statistics, biases, gate gradients).
///
/// Semantics: entry c lives at data() + c*stride(); same storage and element
/// rules as filter_bank.
template <class V>
concept channel_vector = requires(const V& v) {
    typename V::value_type;
    typename V::memory_type;
    { v.data() } -> std::convertible_to<const typename V::value_type*>;
    { v.size() } -> std::convertible_to<index>;
    { v.stride() } -> std::convertible_to<index>;
} && std::floating_point<typename V::value_type> && memory_space<typename V::memory_type>;

/// Any filter_bank as psap's own view type (no copy).
template <filter_bank B>
constexpr auto as_matrix_view(const B& b) {
    using T = std::remove_pointer_t<decltype(b.data())>;
    return matrix_view<T, typename B::memory_type>(b.data(), b.rows(), b.cols(), b.row_stride(), b.col_stride());
}

/// Any channel_vector as psap's own view type (no copy).
template <channel_vector V>
constexpr auto as_vector_view(const V& v) {
    using T = std::remove_pointer_t<decltype(v.data())>;
    return vector_view<T, typename V::memory_type>(v.data(), v.size(), v.stride());
}

/// psap::filters / psap::channels accept any model of the concepts too.
template <class B>
    requires filter_bank<std::remove_cvref_t<B>>
constexpr auto filters(B&& b) {
    return as_matrix_view(b);
}
template <class V>
    requires channel_vector<std::remove_cvref_t<V>>
constexpr auto channels(V&& v) {
    return as_vector_view(v);
}

/// Archetypes: the smallest types that model each concept. Kept compiled so
/// the concepts' requirements cannot silently grow.
struct filter_bank_archetype {
    using value_type = float;
    using memory_type = host_memory;
    const float* data() const;
    index rows() const;
    index cols() const;
    index row_stride() const;
    index col_stride() const;
};
struct mutable_filter_bank_archetype {
    using value_type = float;
    using memory_type = host_memory;
    float* data() const;
    index rows() const;
    index cols() const;
    index row_stride() const;
    index col_stride() const;
};
struct channel_vector_archetype {
    using value_type = float;
    using memory_type = host_memory;
    const float* data() const;
    index size() const;
    index stride() const;
};
static_assert(filter_bank<filter_bank_archetype>);
static_assert(!mutable_filter_bank<filter_bank_archetype>);
static_assert(mutable_filter_bank<mutable_filter_bank_archetype>);
static_assert(channel_vector<channel_vector_archetype>);
static_assert(mutable_filter_bank<matrix_view<float>>);
static_assert(filter_bank<matrix_view<const double, device_memory>>);
static_assert(!mutable_filter_bank<matrix_view<const float>>);
static_assert(channel_vector<vector_view<float>>);

}  // namespace psap
