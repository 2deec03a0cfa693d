#pragma once
/// The model interface of the reference trainer: what the CLI, the checkpoint
/// code and the pruning pipeline see of a network.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/graph.hpp"
#include "nn/batch_norm.hpp"
#include "nn/conv2d.hpp"
#include "nn/linear.hpp"

namespace trainer {

enum class dtype { f32, i64 };

/// One entry of the model's state dict, named and shaped exactly as in the
/// equivalent PyTorch module (torchvision naming: "conv1.weight",
/// "layer1.0.bn1.running_var", "layer2.0.downsample.0.weight", "fc.bias",
/// "features.0.weight", "classifier.weight"), so a checkpoint maps 1:1.
/// BN's num_batches_tracked is the one i64 entry. A compacted network may
/// also hold "<conv>.bias_map" buffers (C_out × H_out × W_out, added to that
/// conv's output; config key "bias_maps" lists the convs), see
/// docs/pruning-run.md.
struct named_tensor {
  std::string name;
  std::vector<std::int64_t> shape;
  dtype type = dtype::f32;
  void* data = nullptr;
  float* grad = nullptr;   ///< nullptr for buffers (running statistics, counters)
  bool trainable = false;  ///< a parameter the optimizer updates (then grad != nullptr)

  std::size_t numel() const {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    return n;
  }
  float* f32() const { return type == dtype::f32 ? static_cast<float*>(data) : nullptr; }
  std::int64_t* i64() const { return type == dtype::i64 ? static_cast<std::int64_t*>(data) : nullptr; }
};

/// A convolution of the model with the geometry it has at the model's
/// configured input size. Weight/grad: conv->weight(), conv->weight_grad()
/// (OIHW, out_channels × fan_in rows).
struct conv_ref {
  std::string name;  ///< tensor-name prefix, e.g. "layer1.0.conv1"
  conv2d* conv = nullptr;
  int bn = -1;       ///< index in bn_layers() of the BN normalising its output, -1 if none
  int h_in = 0, w_in = 0, h_out = 0, w_out = 0;

  int c_out() const { return conv->out_channels(); }
  int c_in() const { return conv->in_channels(); }
  int kernel_area() const { return conv->kernel_h() * conv->kernel_w(); }
  int out_area() const { return h_out * w_out; }
  /// Multiply-accumulates per image: C_out·C_in·kh·kw·H_out·W_out.
  std::int64_t macs() const {
    return static_cast<std::int64_t>(c_out()) * c_in() * kernel_area() * out_area();
  }
};

/// A batch norm of the model: γ = bn->gamma(), β = bn->beta(),
/// bn->running_mean(), bn->running_var(), bn->gamma_grad(), bn->beta_grad(),
/// bn->gate_grad(); all length bn->channels().
struct bn_ref {
  std::string name;  ///< tensor-name prefix, e.g. "layer1.0.bn1"
  batch_norm* bn = nullptr;
  int conv = -1;     ///< index in conv_layers() of the conv feeding it
};

/// Channels that are one index set: pruning channel k of the group removes
/// filter k of every producer, channel k of every BN and input channel k of
/// every consumer. In an option-A ResNet each stage's residual stream is one
/// group and each block's internal width another; in VGG each conv is one.
struct channel_group {
  std::string name;                ///< "layer1" (stream of stage 1), "layer1.0" (block), "features.0"
  int channels = 0;
  std::vector<int> producers;      ///< conv_layers() indices whose filters are these channels
  std::vector<int> bns;            ///< bn_layers() indices over these channels
  std::vector<int> consumers;      ///< conv_layers() indices whose input channels are these channels
  bool feeds_classifier = false;   ///< the classifier's input features are these channels
  /// Option A: config keys of shortcut channel maps that index these channels
  /// (e.g. "shortcut_maps[1]"); renumber them when the group is compacted.
  std::vector<std::string> shortcut_maps;
};

/// A trainable network. Inputs are NCHW float32 of shape
/// n × in_channels() × input_h() × input_w(); logits are n × num_classes().
///
/// forward(train = true) uses batch statistics, updates BN running
/// statistics and keeps the activations for backward(); forward(train =
/// false) uses running statistics. backward(dlogits) computes every
/// parameter gradient and BN gate_grad for the batch of the last train-mode
/// forward; gradients are overwritten, not accumulated.
class model {
 public:
  virtual ~model() = default;

  /// e.g. "resnet20", "resnet56-B", "vgg16".
  virtual std::string name() const = 0;
  /// Everything needed to rebuild the architecture: make_model(config())
  /// gives the same network (up to weights).
  virtual nlohmann::json config() const = 0;
  /// The state dict in PyTorch's order: parameters and buffers.
  virtual std::vector<named_tensor> tensors() = 0;
  virtual std::vector<conv_ref> conv_layers() = 0;
  virtual std::vector<bn_ref> bn_layers() = 0;
  virtual std::vector<channel_group> groups() = 0;
  virtual linear& classifier() = 0;

  virtual int in_channels() const = 0;
  virtual int input_h() const = 0;
  virtual int input_w() const = 0;
  virtual int num_classes() const = 0;

  /// Re-initialises every parameter from a seed (same seed → same weights)
  /// and resets the BN running statistics.
  virtual void initialize(std::uint64_t seed) = 0;

  virtual void forward(const float* x, int n, float* logits, bool train) = 0;
  virtual void backward(const float* dlogits) = 0;

  /// The forward pass as data (models/graph.hpp), for executors other than
  /// forward()/backward(); empty ops when the model cannot describe itself.
  /// Its layer pointers stay valid as long as the model.
  virtual graph forward_graph() { return {}; }
};

/// Builds a model from a config (see resnet_config / vgg_config for the
/// keys), initialised from seed.
std::unique_ptr<model> make_model(const nlohmann::json& config, std::uint64_t seed = 0);

/// Total MACs per image (convolutions and the classifier).
std::int64_t total_macs(model& m);
/// Number of trainable scalars.
std::int64_t parameter_count(model& m);
/// Sets the momentum of every BN (std::nullopt: cumulative averaging).
void set_bn_momentum(model& m, std::optional<float> momentum);

}  // namespace trainer
