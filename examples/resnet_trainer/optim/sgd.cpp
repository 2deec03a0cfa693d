#include "optim/sgd.hpp"

#include <stdexcept>

namespace trainer {

sgd::sgd(const std::vector<named_tensor>& params, sgd_options options) : opt_(options) {
  for (const auto& p : params) {
    if (!p.trainable) continue;
    if (p.type != dtype::f32 || p.grad == nullptr)
      throw std::invalid_argument("sgd: trainable tensor \"" + p.name + "\" needs float data and a gradient");
    slots_.push_back({p, float_buffer(p.numel(), 0.0f)});
  }
}

void sgd::step() {
  const float lr = opt_.lr, mu = opt_.momentum, wd = opt_.weight_decay, damp = 1.0f - opt_.dampening;
  const bool first = !started_, nesterov = opt_.nesterov, use_momentum = mu != 0.0f;
  for (auto& s : slots_) {
    float* w = s.param.f32();
    const float* grad = s.param.grad;
    float* buf = s.momentum.data();
    const auto n = static_cast<std::ptrdiff_t>(s.momentum.size());
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      float g = grad[i] + wd * w[i];
      if (use_momentum) {
        const float b = first ? g : mu * buf[i] + damp * g;
        buf[i] = b;
        g = nesterov ? g + mu * b : b;
      }
      w[i] -= lr * g;
    }
  }
  started_ = true;
}

std::vector<named_tensor> sgd::momentum_buffers() {
  std::vector<named_tensor> out;
  for (auto& s : slots_) out.push_back({s.param.name, s.param.shape, dtype::f32, s.momentum.data(), nullptr, false});
  return out;
}

float* sgd::momentum_buffer(const std::string& name) {
  for (auto& s : slots_)
    if (s.param.name == name) return s.momentum.data();
  return nullptr;
}

}  // namespace trainer
