#include "optim/bn_recalibrate.hpp"

#include <optional>
#include <vector>

namespace trainer {

int recalibrate_bn(model& m, const batch_source& source, int batches) {
  auto bns = m.bn_layers();
  std::vector<std::optional<float>> saved;
  for (auto& b : bns) {
    saved.push_back(b.bn->momentum());
    b.bn->reset_running_stats();
    b.bn->set_momentum(std::nullopt);
  }
  std::vector<float> logits;
  int used = 0;
  const float* images = nullptr;
  const std::int32_t* labels = nullptr;
  int n = 0;
  while (used < batches && source(images, labels, n)) {
    logits.resize(static_cast<std::size_t>(n) * static_cast<std::size_t>(m.num_classes()));
    m.forward(images, n, logits.data(), true);
    ++used;
  }
  for (std::size_t i = 0; i < bns.size(); ++i) bns[i].bn->set_momentum(saved[i]);
  return used;
}

}  // namespace trainer
