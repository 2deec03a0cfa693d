#pragma once
/// A constant, per-position additive map on a layer's output: what a
/// compacted network adds in place of input channels that were removed while
/// they still carried a constant (see prune/compact.hpp).

#include <cstddef>

#include "nn/tensor.hpp"

namespace trainer {

/// y[n, c, h, w] += map[c, h, w] for every sample n. The map is a buffer, not
/// a parameter: it has no gradient, and the backward pass of y ← y + map is
/// the identity, so a layer followed by a bias map needs no change there.
/// Zero-initialised.
class bias_map {
 public:
  bias_map(int channels, int height, int width);

  int channels() const { return c_; }
  int height() const { return h_; }
  int width() const { return w_; }
  std::size_t size() const { return values_.size(); }
  float* data() { return values_.data(); }
  const float* data() const { return values_.data(); }

  /// Adds the map to every sample of y (N × channels × height × width);
  /// throws std::invalid_argument for any other shape.
  void forward(tensor& y) const;

 private:
  int c_, h_, w_;
  float_buffer values_;
};

}  // namespace trainer
