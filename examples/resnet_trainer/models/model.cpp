#include "models/model.hpp"

#include <stdexcept>
#include <string>

#include "models/resnet.hpp"
#include "models/state_dict.hpp"
#include "models/vgg.hpp"

namespace trainer {

namespace detail {

int get_int(const nlohmann::json& j, const char* key, const char* arch) {
  if (!j.contains(key) || !j[key].is_number_integer())
    throw std::invalid_argument(std::string(arch) + " config: missing integer \"" + key + "\"");
  return j[key].get<int>();
}

std::vector<int> get_int_list(const nlohmann::json& j, const char* key, const char* arch) {
  if (!j.contains(key) || !j[key].is_array())
    throw std::invalid_argument(std::string(arch) + " config: missing list of integers \"" + key + "\"");
  std::vector<int> out;
  for (const auto& v : j[key]) {
    if (!v.is_number_integer())
      throw std::invalid_argument(std::string(arch) + " config: \"" + key + "\" must hold integers only");
    out.push_back(v.get<int>());
  }
  return out;
}

}  // namespace detail

std::unique_ptr<model> make_model(const nlohmann::json& config, std::uint64_t seed) {
  if (!config.is_object() || !config.contains("arch") || !config["arch"].is_string())
    throw std::invalid_argument("model config: missing \"arch\" (\"resnet\" or \"vgg\")");
  const auto arch = config["arch"].get<std::string>();
  if (arch == "resnet") return make_resnet(config, seed);
  if (arch == "vgg") return make_vgg(config, seed);
  throw std::invalid_argument("model config: unknown \"arch\" \"" + arch + "\" (expected \"resnet\" or \"vgg\")");
}

std::int64_t total_macs(model& m) {
  std::int64_t macs = 0;
  for (const auto& c : m.conv_layers()) macs += c.macs();
  const linear& fc = m.classifier();
  return macs + static_cast<std::int64_t>(fc.in_features()) * fc.out_features();
}

std::int64_t parameter_count(model& m) {
  std::int64_t n = 0;
  for (const auto& t : m.tensors())
    if (t.trainable) n += static_cast<std::int64_t>(t.numel());
  return n;
}

void set_bn_momentum(model& m, std::optional<float> momentum) {
  for (auto& b : m.bn_layers()) b.bn->set_momentum(momentum);
}

}  // namespace trainer
