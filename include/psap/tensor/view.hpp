#pragma once
/// \file view.hpp
/// Non-owning strided views: matrix_view (a bank of N filters x K fan-in)
/// and vector_view (one value per channel), and the raw-pointer adapters
/// psap::filters(data, n, k) and psap::channels(data, n).

#include <psap/error.hpp>
#include <psap/tensor/memory.hpp>

#include <concepts>
#include <cstddef>
#include <type_traits>

namespace psap {

/// A strided vector of `size()` elements in memory space `Memory`.
template <class T, memory_space Memory = host_memory>
class vector_view {
public:
    using element_type = T;
    using value_type = std::remove_cv_t<T>;
    using memory_type = Memory;

    constexpr vector_view() noexcept = default;
    constexpr vector_view(T* data, index size, index stride = 1) : data_(data), size_(size), stride_(stride) {
        if (size < 0) detail::fail("psap::vector_view: negative size ", size);
        if (size > 0 && data == nullptr) detail::fail("psap::vector_view: null data pointer for ", size, " elements");
    }
    /// A view of T converts to a view of const T.
    template <class U>
        requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
    constexpr vector_view(const vector_view<U, Memory>& o) noexcept : data_(o.data()), size_(o.size()), stride_(o.stride()) {}

    constexpr T* data() const noexcept { return data_; }
    constexpr index size() const noexcept { return size_; }
    constexpr index stride() const noexcept { return stride_; }
    constexpr bool empty() const noexcept { return size_ == 0; }

    constexpr T& operator[](index i) const noexcept
        requires std::same_as<Memory, host_memory>
    {
        return data_[i * stride_];
    }
    /// Elements [offset, offset + count).
    constexpr vector_view segment(index offset, index count) const noexcept {
        return vector_view(data_ + offset * stride_, count, stride_, nocheck{});
    }

private:
    struct nocheck {};
    constexpr vector_view(T* d, index n, index s, nocheck) noexcept : data_(d), size_(n), stride_(s) {}
    T* data_ = nullptr;
    index size_ = 0;
    index stride_ = 1;
};

/// A strided rows x cols matrix in memory space `Memory`: row i is filter i,
/// its cols() elements are the filter's fan-in (e.g. C_in * kh * kw of a conv).
template <class T, memory_space Memory = host_memory>
class matrix_view {
public:
    using element_type = T;
    using value_type = std::remove_cv_t<T>;
    using memory_type = Memory;

    constexpr matrix_view() noexcept = default;
    /// Row-major contiguous rows x cols.
    constexpr matrix_view(T* data, index rows, index cols) : matrix_view(data, rows, cols, cols, 1) {}
    constexpr matrix_view(T* data, index rows, index cols, index row_stride, index col_stride)
        : data_(data), rows_(rows), cols_(cols), row_stride_(row_stride), col_stride_(col_stride) {
        if (rows < 0 || cols < 0) detail::fail("psap::matrix_view: negative extent ", rows, " x ", cols);
        if (rows > 0 && cols > 0 && data == nullptr)
            detail::fail("psap::matrix_view: null data pointer for ", rows, " x ", cols, " elements");
    }
    template <class U>
        requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
    constexpr matrix_view(const matrix_view<U, Memory>& o) noexcept
        : data_(o.data()), rows_(o.rows()), cols_(o.cols()), row_stride_(o.row_stride()), col_stride_(o.col_stride()) {}

    constexpr T* data() const noexcept { return data_; }
    constexpr index rows() const noexcept { return rows_; }
    constexpr index cols() const noexcept { return cols_; }
    constexpr index row_stride() const noexcept { return row_stride_; }
    constexpr index col_stride() const noexcept { return col_stride_; }
    constexpr bool empty() const noexcept { return rows_ == 0 || cols_ == 0; }
    /// True when each row is a contiguous run (the fast path of the backends).
    constexpr bool rows_contiguous() const noexcept { return col_stride_ == 1 || cols_ <= 1; }

    constexpr T* row_data(index i) const noexcept { return data_ + i * row_stride_; }
    /// Rows [offset, offset + count): the filters of one group member.
    constexpr matrix_view middle_rows(index offset, index count) const noexcept {
        return matrix_view(data_ + offset * row_stride_, count, cols_, row_stride_, col_stride_, nocheck{});
    }
    constexpr vector_view<T, Memory> row(index i) const noexcept { return {row_data(i), cols_, col_stride_}; }

    constexpr T& operator()(index i, index j) const noexcept
        requires std::same_as<Memory, host_memory>
    {
        return data_[i * row_stride_ + j * col_stride_];
    }

private:
    struct nocheck {};
    constexpr matrix_view(T* d, index r, index c, index rs, index cs, nocheck) noexcept
        : data_(d), rows_(r), cols_(c), row_stride_(rs), col_stride_(cs) {}
    T* data_ = nullptr;
    index rows_ = 0;
    index cols_ = 0;
    index row_stride_ = 0;
    index col_stride_ = 1;
};

namespace detail {
template <class>
inline constexpr bool always_false = false;
}  // namespace detail

/// Raw-pointer adapters (host memory; device pointers: tensor/device.hpp):
/// `n` filters of `k` contiguous values each, or with explicit strides
/// (element (i, j) at data[i*row_stride + j*col_stride]).
template <class T>
constexpr matrix_view<T> filters(T* data, index n, index k) {
    static_assert(std::floating_point<std::remove_cv_t<T>>,
                  "psap::filters: a filter_bank holds floating-point values (float or double); "
                  "this pointer's element type is not floating-point");
    return {data, n, k};
}
template <class T>
constexpr matrix_view<T> filters(T* data, index n, index k, index row_stride, index col_stride) {
    static_assert(std::floating_point<std::remove_cv_t<T>>,
                  "psap::filters: a filter_bank holds floating-point values (float or double); "
                  "this pointer's element type is not floating-point");
    return {data, n, k, row_stride, col_stride};
}
/// `n` channel values, `stride` apart.
template <class T>
constexpr vector_view<T> channels(T* data, index n, index stride = 1) {
    static_assert(std::floating_point<std::remove_cv_t<T>>,
                  "psap::channels: a channel_vector holds floating-point values (float or double); "
                  "this pointer's element type is not floating-point");
    return {data, n, stride};
}

/// Fallbacks chosen only when no adapter accepts the argument: they turn an
/// overload-resolution failure into one readable diagnostic (the dummy return
/// keeps the caller free of follow-on errors).
template <class X>
auto filters(X&&) {
    static_assert(detail::always_false<X>,
                  "psap::filters(x): x is not a filter_bank source. Pass (pointer, n, k), a model of "
                  "psap::filter_bank (include <psap/tensor/concepts.hpp>), an Eigen dense matrix/Map/Ref/Block or "
                  "Eigen::Tensor/TensorMap (include <psap/tensor/eigen.hpp>), or an xtensor container/view "
                  "(include <psap/tensor/xtensor.hpp>), or a torch::Tensor (include <psap/tensor/torch.hpp>), holding "
                  "float or double");
    return matrix_view<float>{};
}
template <class X>
auto channels(X&&) {
    static_assert(detail::always_false<X>,
                  "psap::channels(x): x is not a channel_vector source. Pass (pointer, n), a model of "
                  "psap::channel_vector (include <psap/tensor/concepts.hpp>), an Eigen vector or rank-1 "
                  "Eigen::Tensor (include <psap/tensor/eigen.hpp>), a rank-1 xtensor expression "
                  "(include <psap/tensor/xtensor.hpp>) or a rank-1 torch::Tensor (include <psap/tensor/torch.hpp>), "
                  "holding float or double");
    return vector_view<float>{};
}

}  // namespace psap
