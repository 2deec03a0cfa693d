#pragma once
/// Standalone ReLU and residual add. The networks use the fused
/// batch_norm::forward_relu path; these are the plain layers.

#include "nn/tensor.hpp"

namespace trainer {

/// y = max(x, 0); ∂y/∂x = [x > 0], so the gradient at exactly 0 is 0 (PyTorch).
/// NaN propagates (y = NaN, its gradient passes), as in PyTorch.
class relu {
 public:
  /// In train mode remembers &x for backward (x must stay unchanged).
  void forward(const tensor& x, tensor& y, bool train);
  void backward(const tensor& dy, tensor& dx);

 private:
  const tensor* input_ = nullptr;
};

/// y = a + b (same shapes). Its backward is the identity into both branches.
void residual_add(const tensor& a, const tensor& b, tensor& y);
/// y += x (same shapes): how a second branch's gradient joins the first.
void add_into(const tensor& x, tensor& y);

}  // namespace trainer
