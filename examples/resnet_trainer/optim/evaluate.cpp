#include "optim/evaluate.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <vector>

#include "nn/cross_entropy.hpp"

namespace trainer {

eval_result evaluate(model& m, const batch_source& source) {
  eval_result r;
  cross_entropy ce;
  std::vector<float> logits;
  const float* images = nullptr;
  const std::int32_t* labels = nullptr;
  int n = 0;
  double loss_sum = 0.0;
  std::int64_t correct = 0;
  while (source(images, labels, n)) {
    if (labels == nullptr) throw std::invalid_argument("evaluate: the batch source gave no labels");
    logits.resize(static_cast<std::size_t>(n) * static_cast<std::size_t>(m.num_classes()));
    m.forward(images, n, logits.data(), false);
    loss_sum += static_cast<double>(ce.forward(logits.data(), labels, n, m.num_classes())) * n;
    correct += ce.correct();
    r.count += n;
  }
  if (r.count > 0) {
    r.loss = loss_sum / static_cast<double>(r.count);
    r.accuracy = static_cast<double>(correct) / static_cast<double>(r.count);
  }
  return r;
}

batch_source array_source(const float* images, const std::int32_t* labels, std::int64_t count,
                          std::int64_t image_size, int batch) {
  if (batch < 1) throw std::invalid_argument("array_source: batch must be >= 1");
  auto pos = std::make_shared<std::int64_t>(0);
  return [=](const float*& x, const std::int32_t*& y, int& n) {
    if (*pos >= count) return false;
    n = static_cast<int>(std::min<std::int64_t>(batch, count - *pos));
    x = images + *pos * image_size;
    y = labels != nullptr ? labels + *pos : nullptr;
    *pos += n;
    return true;
  };
}

}  // namespace trainer
