#pragma once
/// Softmax cross-entropy, mean over the batch (nn.CrossEntropyLoss()).

#include <cstdint>
#include <vector>

namespace trainer {

class cross_entropy {
 public:
  /// logits: n × classes row-major; labels in [0, classes). Returns the mean
  /// loss and keeps the softmax for backward().
  float forward(const float* logits, const std::int32_t* labels, int n, int classes);
  /// dlogits = (softmax − onehot) / n.
  void backward(float* dlogits) const;
  /// Number of rows whose largest logit is the label (first maximum wins).
  int correct() const { return correct_; }

 private:
  int n_ = 0, classes_ = 0, correct_ = 0;
  std::vector<float> prob_;
  std::vector<std::int32_t> labels_;
};

}  // namespace trainer
