#pragma once
/// Fully connected layer y = x·Wᵀ + b (PyTorch's nn.Linear).

#include "nn/rng.hpp"
#include "nn/tensor.hpp"

namespace trainer {

/// Weight is [out_features, in_features] row-major. Input x is any tensor
/// whose sample size is in_features (N×C×1×1 after global pooling); y is
/// N×out×1×1. backward() overwrites the gradients.
class linear {
 public:
  linear(int in_features, int out_features, bool bias = true);

  int in_features() const { return in_; }
  int out_features() const { return out_; }
  bool has_bias() const { return !bias_.empty(); }
  float* weight() { return weight_.data(); }
  const float* weight() const { return weight_.data(); }
  float* weight_grad() { return weight_grad_.data(); }
  float* bias() { return bias_.empty() ? nullptr : bias_.data(); }
  float* bias_grad() { return bias_grad_.empty() ? nullptr : bias_grad_.data(); }

  /// PyTorch's default: weight and bias U(±1/√in_features).
  void init_default(rng& g);

  void forward(const tensor& x, tensor& y, bool train);
  /// Writes the parameter gradients and, if dx is not null, ∂L/∂x (shaped like x).
  void backward(const tensor& dy, tensor* dx);

 private:
  int in_, out_;
  float_buffer weight_, weight_grad_, bias_, bias_grad_;
  const tensor* input_ = nullptr;
};

}  // namespace trainer
