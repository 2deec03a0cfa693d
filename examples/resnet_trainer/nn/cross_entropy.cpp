#include "nn/cross_entropy.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace trainer {

float cross_entropy::forward(const float* logits, const std::int32_t* labels, int n, int classes) {
  if (n < 1 || classes < 1) throw std::invalid_argument("cross_entropy: need n >= 1 and classes >= 1");
  n_ = n;
  classes_ = classes;
  correct_ = 0;
  prob_.resize(static_cast<std::size_t>(n) * static_cast<std::size_t>(classes));
  labels_.assign(labels, labels + n);
  double loss = 0.0;
  for (int i = 0; i < n; ++i) {
    const float* z = logits + static_cast<std::size_t>(i) * static_cast<std::size_t>(classes);
    const std::int32_t label = labels[i];
    if (label < 0 || label >= classes)
      throw std::invalid_argument("cross_entropy: label " + std::to_string(label) + " of row " + std::to_string(i) +
                                  " is outside [0, " + std::to_string(classes) + ")");
    int arg = 0;
    for (int k = 1; k < classes; ++k)
      if (z[k] > z[arg]) arg = k;
    if (arg == label) ++correct_;
    // log-sum-exp shifted by the maximum, in double.
    double sum = 0.0;
    for (int k = 0; k < classes; ++k) sum += std::exp(static_cast<double>(z[k]) - z[arg]);
    const double lse = z[arg] + std::log(sum);
    float* p = prob_.data() + static_cast<std::size_t>(i) * static_cast<std::size_t>(classes);
    for (int k = 0; k < classes; ++k) p[k] = static_cast<float>(std::exp(static_cast<double>(z[k]) - lse));
    loss += lse - z[label];
  }
  return static_cast<float>(loss / n);
}

void cross_entropy::backward(float* dlogits) const {
  const float inv = 1.0f / static_cast<float>(n_);
  for (int i = 0; i < n_; ++i) {
    const float* p = prob_.data() + static_cast<std::size_t>(i) * static_cast<std::size_t>(classes_);
    float* d = dlogits + static_cast<std::size_t>(i) * static_cast<std::size_t>(classes_);
    for (int k = 0; k < classes_; ++k) d[k] = p[k] * inv;
    d[labels_[static_cast<std::size_t>(i)]] -= inv;
  }
}

}  // namespace trainer
