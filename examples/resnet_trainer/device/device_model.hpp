#pragma once
/// A model whose forward and backward passes run on a device (device/
/// engine.hpp) while everything else — parameters, gradients, running
/// statistics, state dict, layers and groups for pruning — stays the host
/// model's. psap-train wraps its network in one for `--device cuda`.

#include <memory>
#include <string>

#include "device/engine.hpp"
#include "models/model.hpp"

namespace trainer::device {

class device_model final : public model {
 public:
  device_model(std::unique_ptr<model> host, std::unique_ptr<exec> x)
      : host_(std::move(host)), engine_(*host_, std::move(x)) {}

  model& host() { return *host_; }
  exec& executor() { return engine_.executor(); }

  std::string name() const override { return host_->name(); }
  nlohmann::json config() const override { return host_->config(); }
  std::vector<named_tensor> tensors() override { return host_->tensors(); }
  std::vector<conv_ref> conv_layers() override { return host_->conv_layers(); }
  std::vector<bn_ref> bn_layers() override { return host_->bn_layers(); }
  std::vector<channel_group> groups() override { return host_->groups(); }
  linear& classifier() override { return host_->classifier(); }
  int in_channels() const override { return host_->in_channels(); }
  int input_h() const override { return host_->input_h(); }
  int input_w() const override { return host_->input_w(); }
  int num_classes() const override { return host_->num_classes(); }
  void initialize(std::uint64_t seed) override { host_->initialize(seed); }
  graph forward_graph() override { return host_->forward_graph(); }

  void forward(const float* x, int n, float* logits, bool train) override { engine_.forward(x, n, logits, train); }
  void backward(const float* dlogits) override { engine_.backward(dlogits); }

 private:
  std::unique_ptr<model> host_;
  engine engine_;
};

/// The devices `--device` accepts: "cpu", "cuda", "cuda:N", and "emulated"
/// (the device engine on the host: the GPU code path, checkable without a GPU).
/// Returns `m` itself for "cpu", else a device_model around it.
/// std::invalid_argument for an unknown name; device_error when the build
/// has no CUDA or the machine no usable device.
std::unique_ptr<model> place_on(std::unique_ptr<model> m, const std::string& device);

/// The model whose layers hold the parameters: m.host() for a device_model,
/// else m itself. Its forward() runs the CPU layers (exact comparisons,
/// such as the compaction check, use it).
inline model& host_of(model& m) {
  auto* d = dynamic_cast<device_model*>(&m);
  return d != nullptr ? d->host() : m;
}

/// invalid_argument unless `device` is one of the names place_on accepts.
void check_device_name(const std::string& device);

}  // namespace trainer::device
