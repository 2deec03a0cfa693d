#include "nn/relu.hpp"

#include <stdexcept>

namespace trainer {

void relu::forward(const tensor& x, tensor& y, bool train) {
  y.resize(x.shape());
  const float* xp = x.data();
  float* yp = y.data();
  const std::ptrdiff_t n = static_cast<std::ptrdiff_t>(x.size());
  // `x <= 0 ? 0 : x`, not `x > 0 ? x : 0`: NaN fails both tests, so only this
  // form passes it on and a diverged channel reaches the loss instead of
  // becoming 0. Finite values (and -0 -> +0) are unchanged; still one blend.
#pragma omp parallel for simd schedule(static)
  for (std::ptrdiff_t i = 0; i < n; ++i) yp[i] = xp[i] <= 0.0f ? 0.0f : xp[i];
  input_ = train ? &x : nullptr;
}

void relu::backward(const tensor& dy, tensor& dx) {
  if (input_ == nullptr) throw std::logic_error("relu::backward without a train-mode forward");
  if (dy.shape() != input_->shape()) throw std::invalid_argument("relu::backward: gradient shape does not match");
  dx.resize(dy.shape());
  const float* xp = input_->data();
  const float* g = dy.data();
  float* d = dx.data();
  const std::ptrdiff_t n = static_cast<std::ptrdiff_t>(dy.size());
  // Closed where the forward gave 0; a NaN input, which the forward passed
  // on, passes its gradient too (PyTorch's threshold_backward).
#pragma omp parallel for simd schedule(static)
  for (std::ptrdiff_t i = 0; i < n; ++i) d[i] = xp[i] <= 0.0f ? 0.0f : g[i];
}

void residual_add(const tensor& a, const tensor& b, tensor& y) {
  if (a.shape() != b.shape()) throw std::invalid_argument("residual_add: shapes differ");
  y.resize(a.shape());
  const float* ap = a.data();
  const float* bp = b.data();
  float* yp = y.data();
  const std::ptrdiff_t n = static_cast<std::ptrdiff_t>(a.size());
#pragma omp parallel for simd schedule(static)
  for (std::ptrdiff_t i = 0; i < n; ++i) yp[i] = ap[i] + bp[i];
}

void add_into(const tensor& x, tensor& y) {
  if (x.shape() != y.shape()) throw std::invalid_argument("add_into: shapes differ");
  const float* xp = x.data();
  float* yp = y.data();
  const std::ptrdiff_t n = static_cast<std::ptrdiff_t>(x.size());
#pragma omp parallel for simd schedule(static)
  for (std::ptrdiff_t i = 0; i < n; ++i) yp[i] += xp[i];
}

}  // namespace trainer
