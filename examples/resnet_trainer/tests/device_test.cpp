// The device engine (device/engine.hpp) against the CPU trainer: the same
// network, weights and batch through model::forward/backward on the host
// layers and through the engine must give the same logits, BN running
// statistics, parameter gradients and BN gate gradients, to float tolerance
// (the engine sums in another order). Networks: ResNet option A with a
// renumbered, pruned-style shortcut map and uneven widths, ResNet option B
// with bias maps, and a slim VGG-16 whose ceil-mode pools clip windows; some
// channels gated (γ = β = 0) so the one-sided gate gradient is exercised.
// Then a batch with a NaN pixel: NaN in the same places on both paths.
//
//   trainer_device_test [--exec emulated|cuda]
// emulated (default): the engine on its host executor, no GPU needed.
// cuda: on GPU 0; prints SKIPPED and exits 77 without a CUDA build or device.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "device/device_model.hpp"
#include "models/model.hpp"
#include "models/resnet.hpp"
#include "models/vgg.hpp"

namespace {

using namespace trainer;

int failures = 0, checks = 0;
constexpr std::uint64_t seed = 20261128;

void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

// |a − b| ≤ tol·max(max|a|, 1e-3) over the array: the engine's sums run in
// another order, so compare against the array's own scale (its finite
// values: an Inf would make every tolerance pass). Every value must be
// finite, unless nan_too: then NaN must sit in the same places in both and
// the rest compare as above. Returns how many of a's values are NaN.
std::size_t expect_close(const float* a, const float* b, std::size_t n, double tol, const std::string& what,
                         bool nan_too = false) {
  double scale = 1e-3, worst = 0.0;
  std::size_t at = 0, nan = 0, differ = 0;  // differ: non-finite values that do not match
  bool finite = true;
  for (std::size_t i = 0; i < n; ++i)
    if (std::isfinite(a[i])) scale = std::max(scale, static_cast<double>(std::fabs(a[i])));
  for (std::size_t i = 0; i < n; ++i) {
    nan += std::isnan(a[i]);
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) {
      finite = false;
      differ += std::isnan(a[i]) ? !std::isnan(b[i]) : !(a[i] == b[i]);
      continue;
    }
    const double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (d > worst) {
      worst = d;
      at = i;
    }
  }
  char buf[320];
  std::snprintf(buf, sizeof buf, "%s: worst |diff| %.3g at %zu (cpu %.6g, device %.6g), scale %.3g; %zu of %zu NaN on the cpu, %zu non-finite differ",
                what.c_str(), worst, at, n ? static_cast<double>(a[at]) : 0.0, n ? static_cast<double>(b[at]) : 0.0, scale, nan, n,
                differ);
  if (std::getenv("DEVICE_TEST_VERBOSE")) std::printf("%.3g  %s\n", worst / scale, buf);
  expect((nan_too ? differ == 0 : finite) && worst <= tol * scale, buf);
  return nan;
}

// Perturbs BN affine parameters and running statistics, fills bias maps, and
// gates a few channels (γ = β = 0), identically in both models.
void perturb(model& m, std::mt19937_64& g) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(0.5f, 1.5f);
  for (auto& t : m.tensors()) {
    if (t.type != dtype::f32) continue;
    float* p = t.f32();
    const auto n = t.numel();
    const std::string& s = t.name;
    auto ends = [&s](const char* suf) {
      const std::string x(suf);
      return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
    };
    if (ends("running_var")) {
      for (std::size_t i = 0; i < n; ++i) p[i] = ud(g);
    } else if (ends("running_mean") || ends("bias_map")) {
      for (std::size_t i = 0; i < n; ++i) p[i] = 0.3f * nd(g);
    } else if (t.shape.size() == 1 && ends(".weight")) {  // BN γ
      for (std::size_t i = 0; i < n; ++i) p[i] = ud(g);
    } else if (t.shape.size() == 1 && ends(".bias") && !ends("fc.bias") && !ends("classifier.bias")) {  // BN β
      for (std::size_t i = 0; i < n; ++i) p[i] = 0.2f * nd(g);
    }
  }
  // Gate channel 0 of every other BN.
  int k = 0;
  for (auto& b : m.bn_layers())
    if (k++ % 2 == 0) {
      b.bn->gamma()[0] = 0.0f;
      b.bn->beta()[0] = 0.0f;
    }
}

void copy_weights(model& from, model& to) {
  auto a = from.tensors(), b = to.tensors();
  for (std::size_t i = 0; i < a.size(); ++i)
    std::memcpy(b[i].data, a[i].data, a[i].numel() * (a[i].type == dtype::f32 ? sizeof(float) : sizeof(std::int64_t)));
}

// `loose` scales every tolerance: when two implementations round differently,
// a pre-ReLU value within an ulp of 0 can land on either side, and one such
// flip moves the gradients upstream of it by up to ~1% of their scale. The
// small networks agree to ~1e-5 (no flips at these sizes); ResNet-20, and
// any network on a real GPU (another summation order everywhere), get
// room for a few flips. Index or layout bugs give O(1) errors either way.
void compare(const std::string& label, const nlohmann::json& cfg, const std::string& device, int batch,
             double loose) {
  std::mt19937_64 g(seed);
  auto cpu = make_model(cfg, 7);
  perturb(*cpu, g);
  auto host = make_model(cfg, 0);
  copy_weights(*cpu, *host);
  auto dev = device::place_on(std::move(host), device);
  const int classes = cpu->num_classes();
  const std::size_t in = static_cast<std::size_t>(batch) * cpu->in_channels() * cpu->input_h() * cpu->input_w();
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int step = 0; step < 2; ++step) {
    std::vector<float> x(in), dl(static_cast<std::size_t>(batch) * classes);
    for (auto& v : x) v = nd(g);
    for (auto& v : dl) v = nd(g) / static_cast<float>(batch);
    std::vector<float> lc(dl.size()), ld(dl.size());
    cpu->forward(x.data(), batch, lc.data(), true);
    dev->forward(x.data(), batch, ld.data(), true);
    const std::string at = label + " step " + std::to_string(step) + ": ";
    expect_close(lc.data(), ld.data(), lc.size(), 2e-4 * loose, at + "train logits");
    cpu->backward(dl.data());
    dev->backward(dl.data());
    auto tc = cpu->tensors(), td = dev->tensors();
    expect(tc.size() == td.size(), at + "same state dict");
    for (std::size_t i = 0; i < tc.size() && i < td.size(); ++i) {
      if (tc[i].type == dtype::i64) {
        expect(*tc[i].i64() == *td[i].i64(), at + tc[i].name + " counts the same batches");
        continue;
      }
      expect_close(tc[i].f32(), td[i].f32(), tc[i].numel(), 2e-4 * loose, at + tc[i].name);
      if (tc[i].grad) expect_close(tc[i].grad, td[i].grad, tc[i].numel(), 1e-3 * loose, at + "grad " + tc[i].name);
    }
    auto bc = cpu->bn_layers(), bd = dev->bn_layers();
    for (std::size_t i = 0; i < bc.size(); ++i)
      expect_close(bc[i].bn->gate_grad(), bd[i].bn->gate_grad(), static_cast<std::size_t>(bc[i].bn->channels()), 1e-3 * loose,
                   at + "gate grad " + bc[i].name);
    // Gated channels: the engine's gate gradient is not the autograd zero.
    bool some_gate = false;
    for (std::size_t i = 0; i < bd.size(); i += 2) some_gate |= bd[i].bn->gate_grad()[0] != 0.0f;
    expect(some_gate, at + "gated channels get a non-zero one-sided gate gradient");
    // An SGD step on the CPU model, copied to the device model's host side
    // (weights and running statistics): the next forward must upload them,
    // and both models compute the same function again (without the copy a
    // single kink flip would compound through training).
    for (std::size_t i = 0; i < tc.size(); ++i)
      if (tc[i].grad)
        for (std::size_t j = 0; j < tc[i].numel(); ++j) tc[i].f32()[j] -= 0.05f * tc[i].grad[j];
    copy_weights(*cpu, *dev);
  }
  std::vector<float> x(in), lc(static_cast<std::size_t>(batch) * classes), ld(lc.size());
  for (auto& v : x) v = nd(g);
  cpu->forward(x.data(), batch, lc.data(), false);
  dev->forward(x.data(), batch, ld.data(), false);
  expect_close(lc.data(), ld.data(), lc.size(), 5e-4 * loose, label + ": eval logits after two SGD steps (uploaded)");
}

// One NaN pixel in the batch: it reaches every channel through the first
// batch norm's statistics. The host layers follow PyTorch's rules (ReLU
// passes a NaN input's gradient on, a pooling window holding a NaN outputs
// it), so most gradients are NaN, and the few that are finite (the last
// layers', whose upstream gradient is the given ∂L/∂logits) count every
// entry as open. The engine must give NaN in the same places and the same
// finite values, never a silent 0 where the host has NaN (a diverged step
// the pruner's finiteness checks would not see).
void compare_nan(const std::string& label, const nlohmann::json& cfg, const std::string& device, int batch, double loose) {
  std::mt19937_64 g(seed + 1);
  auto cpu = make_model(cfg, 7);
  auto host = make_model(cfg, 0);
  copy_weights(*cpu, *host);
  auto dev = device::place_on(std::move(host), device);
  const std::size_t in = static_cast<std::size_t>(batch) * cpu->in_channels() * cpu->input_h() * cpu->input_w();
  const std::size_t out = static_cast<std::size_t>(batch) * cpu->num_classes();
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(in), dl(out), lc(out), ld(out);
  for (auto& v : x) v = nd(g);
  for (auto& v : dl) v = nd(g) / static_cast<float>(batch);
  x[in / 2] = std::numeric_limits<float>::quiet_NaN();
  cpu->forward(x.data(), batch, lc.data(), true);
  dev->forward(x.data(), batch, ld.data(), true);
  cpu->backward(dl.data());
  dev->backward(dl.data());
  std::size_t host_nan = 0, total = 0;
  const auto same = [&](const float* a, const float* b, std::size_t n, const std::string& what) {
    host_nan += expect_close(a, b, n, 1e-3 * loose, label + ": " + what, true);
    total += n;
  };
  same(lc.data(), ld.data(), out, "train logits");
  auto tc = cpu->tensors(), td = dev->tensors();
  for (std::size_t i = 0; i < tc.size() && i < td.size(); ++i)
    if (tc[i].grad) same(tc[i].grad, td[i].grad, tc[i].numel(), "grad " + tc[i].name);
  auto bc = cpu->bn_layers(), bd = dev->bn_layers();
  for (std::size_t i = 0; i < bc.size(); ++i)
    same(bc[i].bn->gate_grad(), bd[i].bn->gate_grad(), static_cast<std::size_t>(bc[i].bn->channels()), "gate grad " + bc[i].name);
  // The NaN reached most of the network on the host (else the check above is idle).
  expect(2 * host_nan > total, label + ": " + std::to_string(host_nan) + " of " + std::to_string(total) + " values NaN on the host");
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = "emulated";
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--exec") device = argv[i + 1];
  if (device != "emulated" && device != "cuda") {
    std::printf("usage: trainer_device_test [--exec emulated|cuda]\n");
    return 2;
  }
  if (device == "cuda") {
    if (!device::cuda_built()) {
      std::printf("SKIPPED: this build has no CUDA (configure with the CUDA toolkit and PSAP_ENABLE_CUDA=ON)\n");
      return 77;
    }
    try {
      (void)device::make_cuda_exec(0);
    } catch (const device::device_error& e) {
      std::printf("SKIPPED: %s\n", e.what());
      return 77;
    }
  }
  std::printf("device test on %s, seed %llu\n", device.c_str(), static_cast<unsigned long long>(seed));
  const double small = device == "cuda" ? 50.0 : 1.0;

  // ResNet-8 option A, pruned-style: uneven block widths, a stage-2 map that
  // drops and repeats stream channels, stage 3 keeps the default zero-fill.
  auto a = resnet_config(8, 10, 3, 12, 12, 'A');
  a["stage_widths"] = {6, 8, 12};
  a["block_widths"] = {{5}, {3}, {7}};
  a["shortcut_maps"] = {std::vector<int>{}, std::vector<int>{2, -1, 0, 5, 2, -1, 1, 3},
                        std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, -1, -1, -1, -1}};
  compare("resnet8-A pruned", a, device, 4, small);

  // ResNet-8 option B with bias maps on an odd input (stride-2 edges).
  auto b = resnet_config(8, 5, 1, 11, 9, 'B');
  b["stage_widths"] = {4, 6, 8};
  b["block_widths"] = {{3}, {5}, {2}};
  b["bias_maps"] = {"layer1.0.conv2", "layer2.0.downsample.0", "layer3.0.conv1"};
  compare("resnet8-B bias maps", b, device, 3, small);

  // Slim VGG-16: 18 → 9 → 5 → 3 → 2 → 1 through ceil-mode pools.
  auto v = vgg_config(7, 2, 18, 18);
  v["widths"] = {4, 5, 6, 6, 8, 8, 7, 9, 9, 8, 6, 6, 5};
  v["bias_maps"] = {"features.3"};
  compare("vgg16 slim", v, device, 3, small);

  // ResNet-20 as trained: default widths, 32×32, batch 8.
  compare("resnet20", resnet_config(20), device, 8, 50.0);

  compare_nan("resnet8-A with a NaN pixel", a, device, 4, small);
  compare_nan("vgg16 slim with a NaN pixel", v, device, 3, small);

  std::printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
