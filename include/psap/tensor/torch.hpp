#pragma once
/// \file torch.hpp
/// Adapters from libtorch tensors (at::Tensor, which torch::Tensor and every
/// torch::nn parameter are) to psap views, without copies.
///
///   psap::filters(conv->weight)          float filters of a CPU tensor
///   psap::filters(conv->weight.grad())   its gradient (allocate it first)
///   psap::channels(bn->weight)           one value per channel
///   psap::device_filters(w), psap::device_channels(v)   float CUDA tensors (device_memory)
///   psap::torch_filters<T, Memory>(w), psap::torch_channels<T, Memory>(v)
///                                        any element type (float, double) and memory
///
/// Dimension 0 indexes filters and dimensions 1..R-1 form the fan-in,
/// flattened in storage order (for a contiguous (N, C, kh, kw) conv weight
/// j = (c*kh + y)*kw + x, as in eigen.hpp and xtensor.hpp). A tensor whose
/// fan-in no single stride walks, whose values repeat (an expand()), of
/// another element type or device, sparse, or undefined (a gradient before
/// it exists) raises psap::error saying what to do.
///
/// The view aliases the tensor's storage, not the tensor handle: it stays
/// valid while that storage lives and is not reallocated. libtorch's
/// optimizers zero gradients in place and autograd accumulates into an
/// existing .grad() in place, so views of parameters and of gradients
/// allocated before the first backward pass stay valid through training
/// (tests/tensor/torch_test.cpp checks it). Do not view a temporary copy
/// (w.contiguous() of a non-contiguous w, w.to(...)): the copy is freed at the
/// end of the statement.
///
/// psap writes through the views behind autograd's back (no version-counter
/// bump), as an optimizer does under NoGradGuard: call step() and
/// after_update() when no graph that saved the parameters is still alive,
/// i.e. after backward(), as in the usual loop.

#include <psap/error.hpp>
#include <psap/tensor/memory.hpp>
#include <psap/tensor/strides.hpp>
#include <psap/tensor/view.hpp>

#include <ATen/core/Tensor.h>

#include <concepts>
#include <type_traits>

namespace psap {

namespace detail {
/// at::Tensor in any value category: filters(t) and channels(t) take it as a
/// constrained forwarding reference, so they win over view.hpp's fallbacks.
template <class X>
concept torch_tensor = std::same_as<std::remove_cvref_t<X>, at::Tensor>;

template <class T>
constexpr at::ScalarType torch_scalar_type() {
    if constexpr (std::same_as<T, float>) return at::kFloat;
    else return at::kDouble;
}

/// Everything but the shape: defined, strided, element type, device.
template <class T, class Memory>
void check_torch(const at::Tensor& t, const char* fn) {
    static_assert(std::same_as<T, float> || std::same_as<T, double>,
                  "psap torch adapters: views hold float or double values");
    if (!t.defined())
        fail(fn, ": the tensor is undefined. A parameter's gradient exists only after the first backward pass; "
                 "allocate it before describing the network, e.g. p.mutable_grad() = torch::zeros_like(p)");
    if (t.layout() != at::kStrided)
        fail(fn, ": the tensor has layout ", t.layout(), "; psap views dense strided tensors (convert with to_dense())");
    if (t.scalar_type() != torch_scalar_type<T>())
        fail(fn, ": the tensor holds ", t.scalar_type(), " values and the view ", std::same_as<T, float> ? "float" : "double",
             "; view it as its own type (psap::torch_filters<", t.scalar_type() == at::kDouble ? "double" : "float",
             "> / psap::torch_channels) or convert the model itself (module->to(torch::kFloat)), never a temporary copy");
    constexpr bool host = std::same_as<Memory, host_memory>;
    if (host && !t.device().is_cpu())
        fail(fn, ": the tensor is on ", t.device(), "; use psap::device_filters / psap::device_channels for CUDA tensors "
                 "(and the CUDA backend), or move the model to the CPU");
    if (!host && !t.device().is_cuda())
        fail(fn, ": the tensor is on ", t.device(), ", not a CUDA device; use psap::filters / psap::channels for CPU tensors");
}

template <class T, class Memory>
matrix_view<T, Memory> torch_filters(const at::Tensor& t, const char* fn) {
    check_torch<T, Memory>(t, fn);
    const auto shape = t.sizes();
    const auto strides = t.strides();
    if (shape.size() < 2)
        fail(fn, ": a tensor of filters needs rank >= 2 (filters x fan-in...), got rank ", shape.size(),
             "; use psap::channels for one value per channel");
    index k = 0;
    const index col_stride = collapse_fan_in(shape, strides, k, "torch tensor",
                                             "make the parameter itself contiguous (p.set_data(p.contiguous())) before "
                                             "describing the network, never view a temporary copy");
    const index n = static_cast<index>(shape[0]);
    index row_stride = static_cast<index>(strides[0]);
    if (n <= 1) row_stride = k;
    else if (row_stride == 0 && k > 0)
        fail(fn, ": the torch tensor (", describe_layout(shape, strides), ") repeats one filter ", n,
             " times (stride 0 along dimension 0, e.g. an expand()); pruning must write each weight once");
    return matrix_view<T, Memory>(t.data_ptr<T>(), n, k, row_stride, col_stride);
}

template <class T, class Memory>
vector_view<T, Memory> torch_channels(const at::Tensor& t, const char* fn) {
    check_torch<T, Memory>(t, fn);
    if (t.dim() != 1)
        fail(fn, ": expected a rank-1 tensor (one value per channel), got ", describe_layout(t.sizes(), t.strides()));
    const index n = static_cast<index>(t.size(0));
    const index stride = n > 1 ? static_cast<index>(t.stride(0)) : 1;
    if (n > 1 && stride == 0)
        fail(fn, ": the torch tensor repeats one value ", n, " times (stride 0, e.g. an expand()); pruning must write each value once");
    return vector_view<T, Memory>(t.data_ptr<T>(), n, stride);
}
}  // namespace detail

/// A tensor of rank >= 2 as filters (dimension 0) x fan-in (the rest), of
/// element type T in memory Memory (host: a CPU tensor; device: a CUDA one).
template <class T = float, memory_space Memory = host_memory>
matrix_view<T, Memory> torch_filters(const at::Tensor& t) {
    return detail::torch_filters<T, Memory>(t, "psap::torch_filters");
}
/// A rank-1 tensor as one value per channel, of element type T in memory Memory.
template <class T = float, memory_space Memory = host_memory>
vector_view<T, Memory> torch_channels(const at::Tensor& t) {
    return detail::torch_channels<T, Memory>(t, "psap::torch_channels");
}

/// A float CPU tensor of rank >= 2 as filters x fan-in.
template <class Tn>
    requires detail::torch_tensor<Tn>
matrix_view<float> filters(Tn&& t) {
    return detail::torch_filters<float, host_memory>(t, "psap::filters");
}
/// A rank-1 float CPU tensor as one value per channel.
template <class Tn>
    requires detail::torch_tensor<Tn>
vector_view<float> channels(Tn&& t) {
    return detail::torch_channels<float, host_memory>(t, "psap::channels");
}
/// A float CUDA tensor of rank >= 2 as filters x fan-in in device memory.
inline matrix_view<float, device_memory> device_filters(const at::Tensor& t) {
    return detail::torch_filters<float, device_memory>(t, "psap::device_filters");
}
/// A rank-1 float CUDA tensor as one value per channel in device memory.
inline vector_view<float, device_memory> device_channels(const at::Tensor& t) {
    return detail::torch_channels<float, device_memory>(t, "psap::device_channels");
}

}  // namespace psap
