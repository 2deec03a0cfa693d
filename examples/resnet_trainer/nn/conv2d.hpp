#pragma once
/// 2-D convolution (cross-correlation, as PyTorch's nn.Conv2d), NCHW, no groups/dilation.

#include <vector>

#include "nn/rng.hpp"
#include "nn/tensor.hpp"

namespace trainer {

/// Weight layout is OIHW, row-major and contiguous: filter o is row o of an
/// out_channels × fan_in() matrix (fan_in = in_channels·kh·kw). The weight
/// gradient has the same layout in its own buffer. backward() overwrites the
/// gradients (no accumulation across calls).
class conv2d {
 public:
  conv2d(int in_channels, int out_channels, int kernel, int stride, int padding, bool bias = false);
  conv2d(int in_channels, int out_channels, int kernel_h, int kernel_w, int stride, int padding, bool bias);

  int in_channels() const { return in_c_; }
  int out_channels() const { return out_c_; }
  int kernel_h() const { return kh_; }
  int kernel_w() const { return kw_; }
  int stride() const { return stride_; }
  int padding() const { return pad_; }
  bool has_bias() const { return !bias_.empty(); }
  /// Row length of the weight matrix: in_channels·kh·kw.
  int fan_in() const { return in_c_ * kh_ * kw_; }
  int out_h(int in_h) const { return (in_h + 2 * pad_ - kh_) / stride_ + 1; }
  int out_w(int in_w) const { return (in_w + 2 * pad_ - kw_) / stride_ + 1; }

  float* weight() { return weight_.data(); }
  const float* weight() const { return weight_.data(); }
  float* weight_grad() { return weight_grad_.data(); }
  const float* weight_grad() const { return weight_grad_.data(); }
  /// nullptr when the layer has no bias.
  float* bias() { return bias_.empty() ? nullptr : bias_.data(); }
  float* bias_grad() { return bias_grad_.empty() ? nullptr : bias_grad_.data(); }
  std::size_t weight_size() const { return weight_.size(); }

  /// Kaiming normal, mode fan_out, gain √2 (torchvision ResNet); bias 0.
  void init_kaiming_fan_out(rng& g);
  /// PyTorch's nn.Conv2d default: U(±1/√fan_in) for weight and bias.
  void init_default(rng& g);

  /// y ← conv(x). In train mode the layer remembers &x for backward(): x must
  /// stay alive and unchanged until then.
  void forward(const tensor& x, tensor& y, bool train);
  /// From dy = ∂L/∂y: writes weight_grad (and bias_grad), and ∂L/∂x into *dx
  /// unless dx is nullptr (the stem needs no input gradient); with
  /// accumulate_dx, ∂L/∂x is added to *dx instead (a second branch).
  void backward(const tensor& dy, tensor* dx, bool accumulate_dx = false);

 private:
  /// Stride-1 convs on planes at least 14 wide read their im2col rows as
  /// shifted windows of a zero-padded copy of the input; the others build an
  /// explicit im2col buffer.
  bool use_shifted(int out_w) const;

  struct workspace {
    float_buffer in, grad, out;  // padded input or im2col; output-gradient copy; staging
  };

  int in_c_, out_c_, kh_, kw_, stride_, pad_;
  float_buffer weight_, weight_grad_, bias_, bias_grad_;
  float_buffer packed_;             // weights packed for the kernel (forward or input gradient)
  float_buffer flipped_;            // flipped, transposed kernel of the shifted input gradient
  std::vector<workspace> ws_;       // one per thread
  std::vector<float_buffer> dw_;    // per-thread weight-gradient partial sums
  const tensor* input_ = nullptr;
};

}  // namespace trainer
