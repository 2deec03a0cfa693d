#include "nn/pooling.hpp"

#include "device/kernels.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>

namespace trainer {

void global_avg_pool::forward(const tensor& x, tensor& y) {
  in_shape_ = x.shape();
  const int hw = static_cast<int>(in_shape_.plane());
  y.resize({in_shape_.n, in_shape_.c, 1, 1});
  const int planes = in_shape_.n * in_shape_.c;
  const float inv = 1.0f / static_cast<float>(hw);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < planes; ++i) {
    const float* p = x.data() + static_cast<std::size_t>(i) * static_cast<std::size_t>(hw);
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < hw; ++j) s += p[j];
    y.data()[i] = s * inv;
  }
}

void global_avg_pool::backward(const tensor& dy, tensor& dx) const {
  if (dy.shape() != shape4{in_shape_.n, in_shape_.c, 1, 1})
    throw std::invalid_argument("global_avg_pool::backward: gradient shape does not match");
  dx.resize(in_shape_);
  const int hw = static_cast<int>(in_shape_.plane());
  const int planes = in_shape_.n * in_shape_.c;
  const float inv = 1.0f / static_cast<float>(hw);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < planes; ++i) {
    float* p = dx.data() + static_cast<std::size_t>(i) * static_cast<std::size_t>(hw);
    const float v = dy.data()[i] * inv;
    for (int j = 0; j < hw; ++j) p[j] = v;
  }
}

max_pool2d::max_pool2d(int kernel, int stride, bool ceil_mode) : k_(kernel), s_(stride), ceil_(ceil_mode) {
  if (k_ < 1 || s_ < 1) throw std::invalid_argument("max_pool2d: kernel and stride must be >= 1");
}

int max_pool2d::out_size(int in) const {
  if (in < k_ && !ceil_) return 0;
  int out = ceil_ ? (in - k_ + s_ - 1) / s_ + 1 : (in - k_) / s_ + 1;
  // PyTorch: the last window must start inside the input.
  if (ceil_ && (out - 1) * s_ >= in) --out;
  return out;
}

void max_pool2d::forward(const tensor& x, tensor& y, bool train) {
  in_shape_ = x.shape();
  const int h = in_shape_.h, w = in_shape_.w;
  const int ho = out_size(h), wo = out_size(w);
  if (ho < 1 || wo < 1)
    throw std::invalid_argument("max_pool2d: input " + std::to_string(h) + "x" + std::to_string(w) +
                                " is too small for kernel " + std::to_string(k_));
  y.resize({in_shape_.n, in_shape_.c, ho, wo});
  if (train) argmax_.resize(y.size());
  // One output element per index, the body the device engine runs too.
  const device::kernels::max_pool_forward window{x.data(), y.data(), train ? argmax_.data() : nullptr, h, w, ho, wo,
                                                 k_, s_};
  const auto outputs = static_cast<std::int64_t>(y.size());
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < outputs; ++i) window(i);
}

void max_pool2d::backward(const tensor& dy, tensor& dx) const {
  if (dy.size() != argmax_.size() || dy.shape().n != in_shape_.n || dy.shape().c != in_shape_.c)
    throw std::invalid_argument("max_pool2d::backward: gradient does not match the last train-mode forward");
  dx.resize(in_shape_);
  const int planes = in_shape_.n * in_shape_.c;
  const std::size_t out_plane = dy.shape().plane();
#pragma omp parallel for schedule(static)
  for (int i = 0; i < planes; ++i) {
    float* p = dx.data() + static_cast<std::size_t>(i) * in_shape_.plane();
    for (std::size_t j = 0; j < in_shape_.plane(); ++j) p[j] = 0.0f;
    const float* g = dy.data() + static_cast<std::size_t>(i) * out_plane;
    const std::int32_t* a = argmax_.data() + static_cast<std::size_t>(i) * out_plane;
    for (std::size_t j = 0; j < out_plane; ++j) p[a[j]] += g[j];
  }
}

}  // namespace trainer
