#pragma once
/// Option-A (parameter-free) residual shortcut with a general channel map.

#include <vector>

#include "nn/tensor.hpp"

namespace trainer {

/// y[n, j] = x[n, map[j], ::stride, ::stride], or 0 when map[j] = −1
/// (He et al. 2016's option A: subsample, then zero-fill the new channels).
/// Output spatial size is ceil(H/stride) × ceil(W/stride), the size of a 3×3
/// pad-1 conv with that stride. A pruned network keeps its option-A
/// shortcuts exact by renumbering the map.
class shortcut_a {
 public:
  shortcut_a(int in_channels, std::vector<int> map, int stride);
  /// The unpruned SFP / fb.resnet.torch layout: j for j < in, −1 after.
  static std::vector<int> default_map(int in_channels, int out_channels);

  int in_channels() const { return in_c_; }
  int out_channels() const { return static_cast<int>(map_.size()); }
  int stride() const { return stride_; }
  const std::vector<int>& map() const { return map_; }

  void forward(const tensor& x, tensor& y) const;
  /// dx[n, map[j], ::s, ::s] += dy[n, j]: adds into dx, which already holds
  /// the gradient of the block's main branch.
  void backward(const tensor& dy, tensor& dx) const;

 private:
  int in_c_, stride_;
  std::vector<int> map_;
};

}  // namespace trainer
