#pragma once
/// A model's forward pass as data: the layer applications in order over
/// numbered activation buffers. The model's own forward()/backward() do not
/// use it; other executors do (device/: the CUDA engine and its host
/// emulation), so they run any network the models can build, pruned or not,
/// without knowing ResNet or VGG.

#include <vector>

namespace trainer {

class conv2d;
class batch_norm;
class bias_map;
class shortcut_a;
class max_pool2d;
class linear;

/// One layer application. `src`/`dst` are buffer ids; buffer 0 is the
/// network input. Parameters are the layer objects' own arrays (an executor
/// finds them by address among model::tensors()).
struct graph_op {
  enum class kind { conv, batch_norm, shortcut_a, max_pool, avg_pool, linear };
  kind type = kind::conv;
  int src = 0, dst = 0;

  const conv2d* conv = nullptr;      ///< conv: the layer ...
  const bias_map* map = nullptr;     ///< ... and the bias map added to its output, if any
  batch_norm* bn = nullptr;          ///< batch_norm (running statistics are updated in train mode)
  const shortcut_a* shortcut = nullptr;
  const max_pool2d* pool = nullptr;
  linear* fc = nullptr;

  /// batch_norm: dst = BN(src) [+ buffer `residual`], then ReLU when `relu`.
  bool relu = false;
  int residual = -1;
  /// batch_norm, for backward: the pre-ReLU buffer this BN's output flows
  /// into (its own when `relu`, else the one of the ReLU after the residual
  /// sum it feeds) and the buffer that ReLU wrote; ∂L/∂γ, ∂L/∂β and the
  /// one-sided gate gradient are taken through that ReLU, as
  /// batch_norm::backward_relu does.
  int relu_z = -1, relu_out = -1;
};

struct graph {
  std::vector<graph_op> ops;
  int buffers = 1;  ///< ids are 0 .. buffers-1
  int logits = -1;  ///< the buffer holding the logits (N × classes)

  /// Adds a buffer and returns its id.
  int buffer() { return buffers++; }

  /// Global average pooling of `src`, then the classifier `fc`, whose output
  /// becomes the logits (the head of every model here).
  void add_head(int src, linear& fc) {
    graph_op pool;
    pool.type = graph_op::kind::avg_pool;
    pool.src = src;
    pool.dst = buffer();
    ops.push_back(pool);
    graph_op out;
    out.type = graph_op::kind::linear;
    out.src = pool.dst;
    out.dst = logits = buffer();
    out.fc = &fc;
    ops.push_back(out);
  }
};

}  // namespace trainer
