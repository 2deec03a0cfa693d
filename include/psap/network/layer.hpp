#pragma once
/// \file layer.hpp
/// A prunable layer as psap sees it: views of the user's weight, gradient,
/// optional bias and batch norm, and the geometry that prices it.

#include <psap/tensor/view.hpp>

#include <optional>
#include <string>

namespace psap {

/// Views of the batch norm that follows a layer (one entry per output channel).
/// Gradients and the gate gradient are optional (empty views).
template <class T, memory_space Memory = host_memory>
struct batch_norm_views {
    vector_view<T, Memory> gamma{}, beta{};
    vector_view<T, Memory> running_mean{}, running_var{};
    vector_view<T, Memory> grad_gamma{}, grad_beta{};
    /// Optional, supplied by the training code: per channel, the one-sided
    /// derivative of the loss as gamma rises from 0 (sum over x_hat > 0 of
    /// dL/da * x_hat); equal to dL/dgamma for an active channel. Without it a
    /// gated channel has no gradient signal (ReLU'(0) = 0), see docs/psap.md.
    vector_view<T, Memory> gate_grad{};
    double eps = 1e-5;
};

/// One layer (conv or linear). Its weight is out_channels filters of
/// in_channels * kernel_area values. MACs = out * in * kernel_area * out_positions.
template <class T, memory_space Memory = host_memory>
struct layer {
    std::string name{};
    index out_channels = 0;
    index in_channels = 0;
    index kernel_area = 1;    ///< kh * kw (1 for linear)
    index out_positions = 1;  ///< H_out * W_out (1 for linear)
    matrix_view<T, Memory> weight{};  ///< out_channels x (in_channels * kernel_area); empty for a cost-only layer
    matrix_view<T, Memory> grad{};    ///< same shape as weight, or empty
    vector_view<T, Memory> bias{};    ///< out_channels, or empty
    vector_view<T, Memory> grad_bias{};
    std::optional<batch_norm_views<T, Memory>> bn{};
    /// Count the layer's output channels as "filters" in a filters budget.
    bool counts_as_filters = true;

    bool has_weight() const noexcept { return !weight.empty(); }
    bool has_grad() const noexcept { return !grad.empty(); }
};

}  // namespace psap
