#include "nn/shortcut.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace trainer {

shortcut_a::shortcut_a(int in_channels, std::vector<int> map, int stride)
    : in_c_(in_channels), stride_(stride), map_(std::move(map)) {
  if (in_c_ < 1 || stride_ < 1 || map_.empty())
    throw std::invalid_argument("shortcut_a: need in_channels >= 1, stride >= 1 and a non-empty map");
  for (std::size_t j = 0; j < map_.size(); ++j)
    if (map_[j] < -1 || map_[j] >= in_c_)
      throw std::invalid_argument("shortcut_a: map[" + std::to_string(j) + "] = " + std::to_string(map_[j]) +
                                  " is outside [-1, " + std::to_string(in_c_) + ")");
}

std::vector<int> shortcut_a::default_map(int in_channels, int out_channels) {
  std::vector<int> m(static_cast<std::size_t>(out_channels));
  for (int j = 0; j < out_channels; ++j) m[static_cast<std::size_t>(j)] = j < in_channels ? j : -1;
  return m;
}

void shortcut_a::forward(const tensor& x, tensor& y) const {
  const shape4 s = x.shape();
  if (s.c != in_c_) throw std::invalid_argument("shortcut_a: input channel count does not match");
  const int ho = (s.h - 1) / stride_ + 1, wo = (s.w - 1) / stride_ + 1;
  const int cout = out_channels();
  y.resize({s.n, cout, ho, wo});
#pragma omp parallel for schedule(static)
  for (int nj = 0; nj < s.n * cout; ++nj) {
    const int n = nj / cout, j = nj % cout;
    float* dst = y.plane(n, j);
    const int src_c = map_[static_cast<std::size_t>(j)];
    if (src_c < 0) {
      std::fill(dst, dst + ho * wo, 0.0f);
      continue;
    }
    const float* src = x.plane(n, src_c);
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox) dst[oy * wo + ox] = src[oy * stride_ * s.w + ox * stride_];
  }
}

void shortcut_a::backward(const tensor& dy, tensor& dx) const {
  const shape4 s = dx.shape();
  const int ho = (s.h - 1) / stride_ + 1, wo = (s.w - 1) / stride_ + 1;
  if (s.c != in_c_ || dy.shape() != shape4{s.n, out_channels(), ho, wo})
    throw std::invalid_argument("shortcut_a::backward: shapes do not match the layer");
  // Parallel over input planes: several j may map onto one input channel.
#pragma omp parallel for schedule(static)
  for (int nc = 0; nc < s.n * in_c_; ++nc) {
    const int n = nc / in_c_, c = nc % in_c_;
    float* dst = dx.plane(n, c);
    for (std::size_t j = 0; j < map_.size(); ++j) {
      if (map_[j] != c) continue;
      const float* src = dy.plane(n, static_cast<int>(j));
      for (int oy = 0; oy < ho; ++oy)
        for (int ox = 0; ox < wo; ++ox) dst[oy * stride_ * s.w + ox * stride_] += src[oy * wo + ox];
    }
  }
}

}  // namespace trainer
