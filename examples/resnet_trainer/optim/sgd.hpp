#pragma once
/// SGD with momentum, dampening, Nesterov and weight decay, exactly as
/// torch.optim.SGD.

#include <string>
#include <vector>

#include "models/model.hpp"
#include "nn/tensor.hpp"

namespace trainer {

struct sgd_options {
  float lr = 0.1f;
  float momentum = 0.9f;
  float dampening = 0.0f;
  float weight_decay = 5e-4f;
  bool nesterov = true;
};

/// Per parameter w with gradient g, one step() does
///   g ← g + wd·w
///   buf ← g on the first step, else μ·buf + (1 − dampening)·g
///   g ← g + μ·buf (Nesterov) or buf
///   w ← w − lr·g
/// Gradients are read, not modified. Weight decay applies to every trainable
/// tensor (BN γ/β and biases included), as with model.parameters() in PyTorch.
class sgd {
 public:
  /// Keeps the trainable entries of `params` (pointers into the model).
  sgd(const std::vector<named_tensor>& params, sgd_options options);
  sgd(model& m, sgd_options options) : sgd(m.tensors(), options) {}

  void step();

  float lr() const { return opt_.lr; }
  void set_lr(float lr) { opt_.lr = lr; }
  const sgd_options& options() const { return opt_; }

  /// The momentum buffers under their parameters' names ("conv1.weight",
  /// PyTorch's state[p]["momentum_buffer"]), shaped like the parameters; for
  /// checkpoints and for pruners that clear the momentum of pruned filters.
  std::vector<named_tensor> momentum_buffers();
  /// nullptr if no parameter has that name.
  float* momentum_buffer(const std::string& name);
  /// False until the first step(): PyTorch then has no buffers yet. Set it
  /// when loading buffers from a checkpoint.
  bool has_momentum() const { return started_; }
  void set_has_momentum(bool v) { started_ = v; }

 private:
  struct slot {
    named_tensor param;
    float_buffer momentum;
  };
  sgd_options opt_;
  std::vector<slot> slots_;
  bool started_ = false;
};

}  // namespace trainer
