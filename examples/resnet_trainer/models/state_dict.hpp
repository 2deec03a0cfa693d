#pragma once
/// Helpers that list a layer's tensors under PyTorch's state-dict names.

#include <string>
#include <vector>

#include "models/model.hpp"

namespace trainer::detail {

inline void add_conv(std::vector<named_tensor>& out, const std::string& prefix, conv2d& c) {
  out.push_back({prefix + ".weight",
                 {c.out_channels(), c.in_channels(), c.kernel_h(), c.kernel_w()},
                 dtype::f32,
                 c.weight(),
                 c.weight_grad(),
                 true});
  if (c.has_bias()) out.push_back({prefix + ".bias", {c.out_channels()}, dtype::f32, c.bias(), c.bias_grad(), true});
}

inline void add_bn(std::vector<named_tensor>& out, const std::string& prefix, batch_norm& b) {
  const std::vector<std::int64_t> shape{b.channels()};
  out.push_back({prefix + ".weight", shape, dtype::f32, b.gamma(), b.gamma_grad(), true});
  out.push_back({prefix + ".bias", shape, dtype::f32, b.beta(), b.beta_grad(), true});
  out.push_back({prefix + ".running_mean", shape, dtype::f32, b.running_mean(), nullptr, false});
  out.push_back({prefix + ".running_var", shape, dtype::f32, b.running_var(), nullptr, false});
  out.push_back({prefix + ".num_batches_tracked", {}, dtype::i64, &b.num_batches_tracked(), nullptr, false});
}

inline void add_linear(std::vector<named_tensor>& out, const std::string& prefix, linear& l) {
  out.push_back({prefix + ".weight", {l.out_features(), l.in_features()}, dtype::f32, l.weight(), l.weight_grad(), true});
  if (l.has_bias()) out.push_back({prefix + ".bias", {l.out_features()}, dtype::f32, l.bias(), l.bias_grad(), true});
}

/// Reads an int field of a config, with an error naming the key.
int get_int(const nlohmann::json& j, const char* key, const char* arch);
std::vector<int> get_int_list(const nlohmann::json& j, const char* key, const char* arch);

}  // namespace trainer::detail
