#pragma once
/// \file device.hpp
/// Device-pointer adapters: views of CUDA device memory, tagged
/// psap::device_memory, so they select the CUDA backend (include
/// psap/backend/cuda.hpp and link psap::cuda to run a pruner on them).
/// Plain C++: describing a device network needs no CUDA header. The pointers
/// are never dereferenced on the host.

#include <psap/tensor/memory.hpp>
#include <psap/tensor/view.hpp>

#include <concepts>
#include <type_traits>

namespace psap {

/// `n` filters of `k` contiguous values each in device memory.
template <class T>
constexpr matrix_view<T, device_memory> device_filters(T* data, index n, index k) {
    static_assert(std::floating_point<std::remove_cv_t<T>>, "psap::device_filters: filters hold float or double values");
    return {data, n, k};
}
/// `n` filters of `k` values in device memory, element (i, j) at data[i*row_stride + j*col_stride].
template <class T>
constexpr matrix_view<T, device_memory> device_filters(T* data, index n, index k, index row_stride, index col_stride) {
    static_assert(std::floating_point<std::remove_cv_t<T>>, "psap::device_filters: filters hold float or double values");
    return {data, n, k, row_stride, col_stride};
}
/// `n` channel values in device memory, `stride` apart.
template <class T>
constexpr vector_view<T, device_memory> device_channels(T* data, index n, index stride = 1) {
    static_assert(std::floating_point<std::remove_cv_t<T>>, "psap::device_channels: channel vectors hold float or double values");
    return {data, n, stride};
}

}  // namespace psap
