#pragma once
/// Global average pooling and 2-D max pooling (PyTorch semantics).

#include <cstdint>
#include <vector>

#include "nn/tensor.hpp"

namespace trainer {

/// N×C×H×W → N×C×1×1 mean over each plane.
class global_avg_pool {
 public:
  void forward(const tensor& x, tensor& y);
  /// dx[n, c, :, :] = dy[n, c] / (H·W); dx is shaped like the last input.
  void backward(const tensor& dy, tensor& dx) const;

 private:
  shape4 in_shape_;
};

/// nn.MaxPool2d(kernel, stride, padding 0, ceil_mode). With ceil_mode the
/// last window may hang over the edge (28 → 14 → 7 → 4 → 2 → 1), but never
/// starts outside the input. Ties go to the first maximum in scan order.
class max_pool2d {
 public:
  max_pool2d(int kernel, int stride, bool ceil_mode);
  int out_size(int in) const;
  int kernel() const { return k_; }
  int stride() const { return s_; }

  /// In train mode records the argmax of every window for backward().
  void forward(const tensor& x, tensor& y, bool train);
  void backward(const tensor& dy, tensor& dx) const;

 private:
  int k_, s_;
  bool ceil_;
  shape4 in_shape_;
  std::vector<std::int32_t> argmax_;  // index inside the input plane
};

}  // namespace trainer
