#include "nn/bias_map.hpp"

#include <stdexcept>
#include <string>

namespace trainer {

bias_map::bias_map(int channels, int height, int width) : c_(channels), h_(height), w_(width) {
  if (channels < 1 || height < 1 || width < 1)
    throw std::invalid_argument("bias_map: channels, height and width must be >= 1, got " + std::to_string(channels) +
                                "x" + std::to_string(height) + "x" + std::to_string(width));
  values_.assign(static_cast<std::size_t>(channels) * static_cast<std::size_t>(height) * static_cast<std::size_t>(width),
                 0.0f);
}

void bias_map::forward(tensor& y) const {
  const shape4 s = y.shape();
  if (s.c != c_ || s.h != h_ || s.w != w_)
    throw std::invalid_argument("bias_map: output is " + std::to_string(s.c) + "x" + std::to_string(s.h) + "x" +
                                std::to_string(s.w) + " per sample, the map is " + std::to_string(c_) + "x" +
                                std::to_string(h_) + "x" + std::to_string(w_));
  const std::size_t per = s.sample();
#pragma omp parallel for schedule(static)
  for (int n = 0; n < s.n; ++n) {
    float* yp = y.sample(n);
    const float* m = values_.data();
#pragma omp simd
    for (std::size_t i = 0; i < per; ++i) yp[i] += m[i];
  }
}

}  // namespace trainer
