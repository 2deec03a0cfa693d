#pragma once
/// Runs a model's forward and backward passes on an executor (a CUDA device
/// or its host emulation) from the model's forward_graph(). The host model
/// stays the owner of every parameter: each forward uploads them, a train
/// forward brings the updated BN running statistics back, and backward
/// brings every gradient (and BN gate gradient) back into the model's own
/// gradient arrays. So the optimizer, the pruner's hooks, checkpoints and
/// compaction work on the host model unchanged, and a checkpoint written by
/// a GPU run is an ordinary checkpoint. See docs/cuda.md, "The trainer on a GPU".

#include <memory>

#include "device/exec.hpp"
#include "models/model.hpp"

namespace trainer::device {

class engine {
 public:
  /// `m` must outlive the engine and keep its architecture (its layers) for
  /// the engine's lifetime; invalid_argument if its graph is empty or uses a
  /// layer the engine does not support.
  engine(model& m, std::unique_ptr<exec> x);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  exec& executor();

  /// As model::forward / model::backward of the host model.
  void forward(const float* x, int n, float* logits, bool train);
  void backward(const float* dlogits);

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

}  // namespace trainer::device
