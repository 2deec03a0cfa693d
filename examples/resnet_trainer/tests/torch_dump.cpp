// Writes what scripts/torch_crosscheck.py needs to rebuild a network in
// PyTorch and compare: the model config, all tensors (weights before the
// step), one batch, the train-mode logits and loss, every parameter gradient,
// the BN running statistics after that forward, and eval-mode logits.
// Format: <out>.json (config + an index of tensors: name, shape, offset in
// floats) and <out>.bin (little-endian float32, concatenated).
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/resnet.hpp"
#include "models/vgg.hpp"
#include "nn/cross_entropy.hpp"
#include "nn/rng.hpp"

using namespace trainer;

namespace {

struct writer {
  nlohmann::json index = nlohmann::json::array();
  std::vector<float> data;
  void add(const std::string& name, const std::vector<std::int64_t>& shape, const float* p, std::size_t n) {
    index.push_back({{"name", name}, {"shape", shape}, {"offset", data.size()}, {"count", n}});
    data.insert(data.end(), p, p + n);
  }
};

nlohmann::json config_for(const std::string& which) {
  if (which == "resnet20") return resnet_config(20, 10, 3, 32, 32, 'A');
  if (which == "resnet20-B") return resnet_config(20, 10, 3, 32, 32, 'B');
  if (which == "resnet20-pruned") {  // free widths and a scrambled option-A map
    auto c = resnet_config(20, 10, 3, 32, 32, 'A');
    c["stage_widths"] = {12, 20, 40};
    c["block_widths"] = {{5, 16, 9}, {20, 7, 13}, {33, 8, 64}};
    std::vector<int> m1(20, -1), m2(40, -1);
    for (int j = 0; j < 12; ++j) m1[static_cast<std::size_t>(19 - j)] = j;
    for (int j = 0; j < 20; ++j) m2[static_cast<std::size_t>(2 * j)] = (7 * j) % 20;
    c["shortcut_maps"] = {std::vector<int>{}, m1, m2};
    return c;
  }
  if (which == "vgg16") return vgg_config(10, 1, 28, 28);
  if (which == "vgg16-8px") return vgg_config(10, 3, 8, 8);  // every layer at full width, few pool windows
  if (which == "vgg16-narrow") {                             // free widths on 28×28: pools at 14, 7, 4 (ceil), 2, 1
    auto c = vgg_config(10, 1, 28, 28);
    c["widths"] = {8, 8, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32};
    return c;
  }
  if (which == "tiny-a") {  // the whole-model gradient test's networks
    auto c = resnet_config(14, 4, 2, 8, 8);
    c["stage_widths"] = {4, 6, 5};
    c["block_widths"] = {{3, 4}, {5, 2}, {3, 4}};
    c["shortcut_maps"] = {std::vector<int>{}, std::vector<int>{3, -1, 0, 1, -1, 2}, std::vector<int>{5, 0, -1, 2, 1}};
    return c;
  }
  if (which == "tiny-b") {
    auto c = resnet_config(8, 3, 1, 7, 7, 'B');
    c["stage_widths"] = {3, 5, 4};
    c["block_widths"] = {{2}, {3}, {4}};
    return c;
  }
  if (which == "tiny-vgg") {
    auto c = vgg_config(3, 1, 10, 10);
    c["widths"] = {3, 4, 4, 3, 5, 3, 4, 3, 2, 4, 3, 3, 4};
    return c;
  }
  throw std::invalid_argument("unknown model " + which + " (resnet20, resnet20-B, resnet20-pruned, vgg16, vgg16-8px, vgg16-narrow, tiny-a, tiny-b, tiny-vgg)");
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: trainer_torch_dump MODEL BATCH OUT_PREFIX [DATA_SEED]\n");
    return 2;
  }
  const std::string which = argv[1];
  const int n = std::stoi(argv[2]);
  const std::string out = argv[3];
  const auto cfg = config_for(which);
  auto m = make_model(cfg, 1234);
  rng g(argc == 5 ? std::stoull(argv[4]) : 99);
  // Move γ, β and the running statistics off their initial values, and gate
  // one channel per BN (γ = β = 0) so exact zeros are compared too.
  for (auto& b : m->bn_layers()) {
    for (int c = 0; c < b.bn->channels(); ++c) {
      b.bn->gamma()[c] = static_cast<float>(g.uniform(0.5, 1.5));
      b.bn->beta()[c] = static_cast<float>(g.uniform(-0.3, 0.3));
      b.bn->running_mean()[c] = static_cast<float>(g.uniform(-0.1, 0.1));
      b.bn->running_var()[c] = static_cast<float>(g.uniform(0.8, 1.2));
    }
    const int gated = static_cast<int>(g.below(static_cast<std::uint64_t>(b.bn->channels())));
    b.bn->gamma()[gated] = 0.0f;
    b.bn->beta()[gated] = 0.0f;
  }
  writer w;
  for (auto& t : m->tensors())
    if (t.type == dtype::f32) w.add("param:" + t.name, t.shape, t.f32(), t.numel());
  const std::size_t image = static_cast<std::size_t>(m->in_channels() * m->input_h() * m->input_w());
  std::vector<float> x(static_cast<std::size_t>(n) * image);
  for (auto& v : x) v = static_cast<float>(g.normal());
  std::vector<std::int32_t> y(static_cast<std::size_t>(n));
  std::vector<float> yf(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) {
    y[i] = static_cast<std::int32_t>(g.below(static_cast<std::uint64_t>(m->num_classes())));
    yf[i] = static_cast<float>(y[i]);
  }
  w.add("input", {n, m->in_channels(), m->input_h(), m->input_w()}, x.data(), x.size());
  w.add("labels", {n}, yf.data(), yf.size());
  std::vector<float> logits(static_cast<std::size_t>(n * m->num_classes())), dlogits(logits.size());
  m->forward(x.data(), n, logits.data(), true);
  cross_entropy ce;
  const float loss = ce.forward(logits.data(), y.data(), n, m->num_classes());
  ce.backward(dlogits.data());
  m->backward(dlogits.data());
  w.add("logits", {n, m->num_classes()}, logits.data(), logits.size());
  w.add("loss", {}, &loss, 1);
  for (auto& t : m->tensors()) {
    if (t.trainable) w.add("grad:" + t.name, t.shape, t.grad, t.numel());
    else if (t.type == dtype::f32) w.add("after:" + t.name, t.shape, t.f32(), t.numel());
  }
  for (auto& b : m->bn_layers()) w.add("gate:" + b.name, {b.bn->channels()}, b.bn->gate_grad(), static_cast<std::size_t>(b.bn->channels()));
  m->forward(x.data(), n, logits.data(), false);
  w.add("eval_logits", {n, m->num_classes()}, logits.data(), logits.size());

  std::ofstream(out + ".json") << nlohmann::json{{"model", which}, {"config", cfg}, {"tensors", w.index}}.dump(1);
  std::ofstream bin(out + ".bin", std::ios::binary);
  bin.write(reinterpret_cast<const char*>(w.data.data()), static_cast<std::streamsize>(w.data.size() * sizeof(float)));
  if (!bin) throw std::runtime_error("cannot write " + out + ".bin");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "trainer_torch_dump: %s\n", e.what());
  return 1;
}
