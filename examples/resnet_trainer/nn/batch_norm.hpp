#pragma once
/// Batch normalisation over (N, H, W) per channel, PyTorch semantics, with an
/// optional fused residual add + ReLU and the one-sided gate gradient.

#include <cstdint>
#include <optional>
#include <vector>

#include "nn/tensor.hpp"

namespace trainer {

/// PyTorch's nn.BatchNorm2d: ε = 1e-5, momentum 0.1, γ = 1, β = 0 at init;
/// the forward pass normalises with the biased batch variance, the running
/// estimate takes the unbiased one (n/(n−1)). All per-channel buffers are
/// contiguous arrays of length channels().
///
/// gate_grad()[c] = Σ_(n,h,w) x̂·g_a·[z > 0 or (z == 0 and x̂ > 0)], where z is
/// the pre-ReLU value this BN's output flows into and g_a = ∂L/∂ReLU(z). For
/// an ordinary channel it equals ∂L/∂γ_c; for a channel gated by γ = β = 0 it
/// is the one-sided derivative as γ rises from 0 (autograd's is exactly 0).
/// Without a following ReLU (backward()) it equals ∂L/∂γ.
///
/// backward* overwrite γ/β gradients and gate_grad (no accumulation).
class batch_norm {
 public:
  explicit batch_norm(int channels, float eps = 1e-5f, float momentum = 0.1f);

  int channels() const { return c_; }
  float eps() const { return eps_; }
  /// std::nullopt: cumulative average of batch statistics (torch momentum=None).
  std::optional<float> momentum() const { return momentum_; }
  void set_momentum(std::optional<float> m) { momentum_ = m; }
  /// running_mean ← 0, running_var ← 1, num_batches_tracked ← 0.
  void reset_running_stats();

  float* gamma() { return gamma_.data(); }
  float* beta() { return beta_.data(); }
  float* running_mean() { return running_mean_.data(); }
  float* running_var() { return running_var_.data(); }
  float* gamma_grad() { return gamma_grad_.data(); }
  float* beta_grad() { return beta_grad_.data(); }
  float* gate_grad() { return gate_grad_.data(); }
  const float* gamma() const { return gamma_.data(); }
  const float* beta() const { return beta_.data(); }
  const float* running_mean() const { return running_mean_.data(); }
  const float* running_var() const { return running_var_.data(); }
  const float* gamma_grad() const { return gamma_grad_.data(); }
  const float* beta_grad() const { return beta_grad_.data(); }
  const float* gate_grad() const { return gate_grad_.data(); }
  std::int64_t& num_batches_tracked() { return num_batches_; }
  std::int64_t num_batches_tracked() const { return num_batches_; }

  /// y ← BN(x). Train mode uses batch statistics, updates the running ones
  /// and remembers &x for backward (x must stay unchanged until then).
  void forward(const tensor& x, tensor& y, bool train);
  /// z ← BN(x) + residual (if not null), y ← max(z, 0) (NaN stays NaN, as in
  /// PyTorch, so a diverged channel reaches the loss). z is written in train
  /// mode only (backward_relu needs it); in eval mode it may be left untouched.
  void forward_relu(const tensor& x, const tensor* residual, tensor& z, tensor& y, bool train);

  /// After forward(), with dy = ∂L/∂y: writes dx and the γ/β gradients;
  /// gate_grad = γ gradient.
  void backward(const tensor& dy, tensor& dx);
  /// For a BN whose output flows (alone or summed) into the pre-ReLU value z:
  /// g_a = ∂L/∂ReLU(z). Writes dx, γ/β gradients, gate_grad, and, if g_z is
  /// not null, ∂L/∂z = g_a·[z > 0] (the gradient of the residual branch).
  /// Valid after forward() or forward_relu().
  void backward_relu(const tensor& g_a, const tensor& z, tensor& dx, tensor* g_z = nullptr);

 private:
  void batch_statistics(const tensor& x);
  void scale_shift(bool train);

  int c_;
  float eps_;
  std::optional<float> momentum_;
  std::int64_t num_batches_ = 0;
  float_buffer gamma_, beta_, running_mean_, running_var_, gamma_grad_, beta_grad_, gate_grad_;
  // Per-channel state of the last train-mode forward: batch mean and
  // 1/√(var+ε); and of the last forward: y = (x − shift)·scale + β.
  float_buffer mean_, invstd_, shift_, scale_;
  const tensor* input_ = nullptr;
};

}  // namespace trainer
