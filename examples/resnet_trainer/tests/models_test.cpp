// Model tests: PyTorch names and shapes, parameter and MAC counts derived by
// hand, config round trips, free widths and channel maps, groups, and a
// whole-network gradient check by directional finite differences.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "models/resnet.hpp"
#include "models/vgg.hpp"
#include "nn/cross_entropy.hpp"
#include "tests/trainer_test_util.hpp"

namespace {

using namespace trainer;
using namespace trainer::test;

std::map<std::string, named_tensor> by_name(model& m) {
  std::map<std::string, named_tensor> out;
  for (auto& t : m.tensors()) out[t.name] = t;
  return out;
}

std::vector<std::int64_t> shape_of(model& m, const std::string& name) {
  auto t = by_name(m);
  REQUIRE(t.count(name) == 1);
  return t[name].shape;
}

// ---- A double-precision reference of the same networks, written from the
// config alone: the oracle for whole-model gradients. ----

using dvec = std::vector<double>;
struct dten {
  int n, c, h, w;
  dvec v;
  double& at(int i, int j, int y, int x) { return v[static_cast<std::size_t>(((i * c + j) * h + y) * w + x)]; }
};
using params = std::map<std::string, dvec>;

dten ref_conv(dten& x, const dvec& wt, int cout, int k, int stride, int pad) {
  const int ho = (x.h + 2 * pad - k) / stride + 1, wo = (x.w + 2 * pad - k) / stride + 1;
  dten y{x.n, cout, ho, wo, dvec(static_cast<std::size_t>(x.n * cout * ho * wo), 0.0)};
  for (int i = 0; i < x.n; ++i)
    for (int o = 0; o < cout; ++o)
      for (int oy = 0; oy < ho; ++oy)
        for (int ox = 0; ox < wo; ++ox) {
          double s = 0.0;
          for (int c = 0; c < x.c; ++c)
            for (int ky = 0; ky < k; ++ky)
              for (int kx = 0; kx < k; ++kx) {
                const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                if (iy >= 0 && iy < x.h && ix >= 0 && ix < x.w)
                  s += wt[static_cast<std::size_t>(((o * x.c + c) * k + ky) * k + kx)] * x.at(i, c, iy, ix);
              }
          y.at(i, o, oy, ox) = s;
        }
  return y;
}

dten ref_bn(dten x, const dvec& gamma, const dvec& beta) {
  const double m = static_cast<double>(x.n * x.h * x.w);
  for (int c = 0; c < x.c; ++c) {
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < x.n; ++i)
      for (int y = 0; y < x.h; ++y)
        for (int z = 0; z < x.w; ++z) mean += x.at(i, c, y, z) / m;
    for (int i = 0; i < x.n; ++i)
      for (int y = 0; y < x.h; ++y)
        for (int z = 0; z < x.w; ++z) var += std::pow(x.at(i, c, y, z) - mean, 2) / m;
    for (int i = 0; i < x.n; ++i)
      for (int y = 0; y < x.h; ++y)
        for (int z = 0; z < x.w; ++z)
          x.at(i, c, y, z) = gamma[static_cast<std::size_t>(c)] * (x.at(i, c, y, z) - mean) / std::sqrt(var + 1e-5) +
                             beta[static_cast<std::size_t>(c)];
  }
  return x;
}

dten ref_relu(dten x) {
  for (auto& v : x.v) v = std::max(v, 0.0);
  return x;
}

dten ref_add(dten a, const dten& b) {
  for (std::size_t i = 0; i < a.v.size(); ++i) a.v[i] += b.v[i];
  return a;
}

dten ref_option_a(dten& x, const std::vector<int>& map) {
  const int ho = (x.h + 1) / 2, wo = (x.w + 1) / 2, cout = static_cast<int>(map.size());
  dten y{x.n, cout, ho, wo, dvec(static_cast<std::size_t>(x.n * cout * ho * wo), 0.0)};
  for (int i = 0; i < x.n; ++i)
    for (int j = 0; j < cout; ++j)
      for (int oy = 0; oy < ho; ++oy)
        for (int ox = 0; ox < wo; ++ox)
          y.at(i, j, oy, ox) = map[static_cast<std::size_t>(j)] < 0 ? 0.0 : x.at(i, map[static_cast<std::size_t>(j)], 2 * oy, 2 * ox);
  return y;
}

dten ref_maxpool_ceil(dten& x) {
  const int ho = (x.h + 1) / 2, wo = (x.w + 1) / 2;
  dten y{x.n, x.c, ho, wo, dvec(static_cast<std::size_t>(x.n * x.c * ho * wo), 0.0)};
  for (int i = 0; i < x.n; ++i)
    for (int c = 0; c < x.c; ++c)
      for (int oy = 0; oy < ho; ++oy)
        for (int ox = 0; ox < wo; ++ox) {
          double m = -1e300;
          for (int yy = 2 * oy; yy < std::min(2 * oy + 2, x.h); ++yy)
            for (int xx = 2 * ox; xx < std::min(2 * ox + 2, x.w); ++xx) m = std::max(m, x.at(i, c, yy, xx));
          y.at(i, c, oy, ox) = m;
        }
  return y;
}

// Global average pool, linear, mean cross-entropy.
double ref_head(dten& x, params& p, const std::string& fc, const std::vector<std::int32_t>& labels) {
  const dvec& w = p[fc + ".weight"];
  const dvec& b = p[fc + ".bias"];
  const int k = static_cast<int>(b.size());
  double loss = 0.0;
  for (int i = 0; i < x.n; ++i) {
    dvec feat(static_cast<std::size_t>(x.c), 0.0), logit(static_cast<std::size_t>(k));
    for (int c = 0; c < x.c; ++c)
      for (int y = 0; y < x.h; ++y)
        for (int z = 0; z < x.w; ++z) feat[static_cast<std::size_t>(c)] += x.at(i, c, y, z) / (x.h * x.w);
    double sum = 0.0;
    for (int o = 0; o < k; ++o) {
      double s = b[static_cast<std::size_t>(o)];
      for (int c = 0; c < x.c; ++c) s += w[static_cast<std::size_t>(o * x.c + c)] * feat[static_cast<std::size_t>(c)];
      logit[static_cast<std::size_t>(o)] = s;
      sum += std::exp(s);
    }
    loss += std::log(sum) - logit[static_cast<std::size_t>(labels[static_cast<std::size_t>(i)])];
  }
  return loss / x.n;
}

dten ref_conv_bn(dten& x, params& p, const std::string& conv, const std::string& bn, int k, int stride, int pad) {
  const dvec& g = p[bn + ".weight"];
  return ref_bn(ref_conv(x, p[conv + ".weight"], static_cast<int>(g.size()), k, stride, pad), g, p[bn + ".bias"]);
}

double ref_loss(const nlohmann::json& cfg, params& p, dten x, const std::vector<std::int32_t>& labels) {
  if (cfg["arch"] == "vgg") {
    const std::set<int> pool_after{1, 3, 6, 9, 12};
    int idx = 0;
    for (int i = 0; i < 13; ++i) {
      x = ref_relu(ref_conv_bn(x, p, "features." + std::to_string(idx), "features." + std::to_string(idx + 1), 3, 1, 1));
      idx += 3;
      if (pool_after.count(i) != 0) {
        x = ref_maxpool_ceil(x);
        ++idx;
      }
    }
    return ref_head(x, p, "classifier", labels);
  }
  x = ref_relu(ref_conv_bn(x, p, "conv1", "bn1", 3, 1, 1));
  const auto blocks = cfg["block_widths"];
  for (std::size_t s = 0; s < blocks.size(); ++s)
    for (std::size_t b = 0; b < blocks[s].size(); ++b) {
      const std::string pre = "layer" + std::to_string(s + 1) + "." + std::to_string(b);
      const int stride = s > 0 && b == 0 ? 2 : 1;
      dten h = ref_relu(ref_conv_bn(x, p, pre + ".conv1", pre + ".bn1", 3, stride, 1));
      h = ref_conv_bn(h, p, pre + ".conv2", pre + ".bn2", 3, 1, 1);
      dten sc = x;
      if (stride == 2 && cfg["shortcut"] == "A") sc = ref_option_a(x, cfg["shortcut_maps"][s].get<std::vector<int>>());
      if (stride == 2 && cfg["shortcut"] == "B") sc = ref_conv_bn(x, p, pre + ".downsample.0", pre + ".downsample.1", 1, 2, 0);
      x = ref_relu(ref_add(h, sc));
    }
  return ref_head(x, p, "fc", labels);
}

// For every trainable tensor, the float analytic gradient of the trainer
// against the central difference of the double reference along a random
// direction (step 1e-6: in double, truncation and rounding are far below
// the tolerance and a ReLU or max-pool kink is almost never within reach).
void check_model_gradient(model& m, int n, std::uint64_t s) {
  rng g(s);
  for (auto& b : m.bn_layers())
    for (int c = 0; c < b.bn->channels(); ++c) {
      b.bn->gamma()[c] = static_cast<float>(g.uniform(0.5, 1.5));
      b.bn->beta()[c] = static_cast<float>(g.uniform(-0.3, 0.3));
    }
  const std::size_t image = static_cast<std::size_t>(m.in_channels() * m.input_h() * m.input_w());
  std::vector<float> x(static_cast<std::size_t>(n) * image);
  for (auto& v : x) v = static_cast<float>(g.normal());
  std::vector<std::int32_t> y(static_cast<std::size_t>(n));
  for (auto& v : y) v = static_cast<std::int32_t>(g.below(static_cast<std::uint64_t>(m.num_classes())));

  std::vector<float> logits(static_cast<std::size_t>(n * m.num_classes())), dlogits(logits.size());
  m.forward(x.data(), n, logits.data(), true);
  cross_entropy ce;
  const float loss = ce.forward(logits.data(), y.data(), n, m.num_classes());
  ce.backward(dlogits.data());
  m.backward(dlogits.data());

  params p;
  for (auto& t : m.tensors())
    if (t.type == dtype::f32) p[t.name] = to_double(t.f32(), t.numel());
  const dten input{n, m.in_channels(), m.input_h(), m.input_w(), to_double(x.data(), x.size())};
  const auto cfg = m.config();
  CHECK(loss == doctest::Approx(ref_loss(cfg, p, input, y)).epsilon(1e-5));

  for (auto& t : m.tensors()) {
    if (!t.trainable) continue;
    CAPTURE(t.name);
    const std::size_t len = t.numel();
    dvec d(len);
    double analytic = 0.0, grad_norm = 0.0;
    for (std::size_t i = 0; i < len; ++i) {
      d[i] = g.normal();
      analytic += d[i] * t.grad[i];
      grad_norm += static_cast<double>(t.grad[i]) * t.grad[i];
    }
    const dvec keep = p[t.name];
    const double h = 1e-6;
    auto at = [&](double step) {
      for (std::size_t i = 0; i < len; ++i) p[t.name][i] = keep[i] + step * d[i];
      return ref_loss(cfg, p, input, y);
    };
    const double numeric = (at(h) - at(-h)) / (2 * h);
    p[t.name] = keep;
    // |⟨g, d⟩| is about ‖g‖ for a random d. Typical agreement is 1e-6·‖g‖;
    // float rounding next to a ReLU or max-pool kink can flip one decision
    // and cost up to ~3e-3·‖g‖, while a wiring error costs O(‖g‖). The
    // absolute floor is the float noise of an O(1) loss, for gradients that
    // vanish (β before a 1×1 BN).
    CHECK(std::abs(numeric - analytic) <= 1e-2 * std::sqrt(grad_norm) + 1e-6);
  }
}

}  // namespace

TEST_CASE("resnet20 option A: PyTorch names, shapes and counts") {
  auto m = make_model(resnet_config(20), 1);
  CHECK(m->name() == "resnet20");
  const auto t = m->tensors();
  CHECK(t.front().name == "conv1.weight");
  CHECK(t.back().name == "fc.bias");
  CHECK(shape_of(*m, "conv1.weight") == std::vector<std::int64_t>{16, 3, 3, 3});
  CHECK(shape_of(*m, "layer1.0.conv1.weight") == std::vector<std::int64_t>{16, 16, 3, 3});
  CHECK(shape_of(*m, "layer2.0.conv1.weight") == std::vector<std::int64_t>{32, 16, 3, 3});
  CHECK(shape_of(*m, "layer3.2.bn2.running_var") == std::vector<std::int64_t>{64});
  CHECK(shape_of(*m, "layer3.2.bn2.num_batches_tracked").empty());
  CHECK(shape_of(*m, "fc.weight") == std::vector<std::int64_t>{10, 64});
  // 19 convs + 19 BNs × 5 entries + fc weight and bias.
  CHECK(t.size() == 19 + 19 * 5 + 2);
  // Hand count: convs 432 + 6·2304 + (4608 + 5·9216) + (18432 + 5·36864) = 267,696;
  // BN γ,β 2·(16 + 6·16 + 6·32 + 6·64) = 1,376; fc 650.
  CHECK(parameter_count(*m) == 269722);
  // MACs at 32×32: stem 442,368; stage 1 6·2,359,296; stages 2, 3 each
  // 1,179,648 + 5·2,359,296; fc 640.
  CHECK(total_macs(*m) == 40551040);
  CHECK(m->conv_layers().size() == 19);
  CHECK(m->bn_layers().size() == 19);
  const auto convs = m->conv_layers();
  CHECK(convs[7].name == "layer2.0.conv1");
  CHECK(convs[7].h_in == 32);
  CHECK(convs[7].h_out == 16);
  CHECK(convs[7].out_area() == 256);
  CHECK(convs[7].kernel_area() == 9);
  CHECK(m->bn_layers()[convs[7].bn].name == "layer2.0.bn1");
}

TEST_CASE("deeper CIFAR resnets: parameter counts by hand") {
  // n blocks per stage: convs 432 + 2n·2304 + (4608 + (2n−1)·9216) + (18432 + (2n−1)·36864),
  // BN 2·(16 + 2n·(16 + 32 + 64)), fc 650. These are also akamaster's printed totals.
  CHECK(parameter_count(*make_model(resnet_config(56), 1)) == 853018);
  CHECK(parameter_count(*make_model(resnet_config(110), 1)) == 1727962);
  CHECK(make_model(resnet_config(110), 1)->conv_layers().size() == 109);
  CHECK_THROWS_AS(resnet_config(21), std::invalid_argument);
}

TEST_CASE("resnet option B adds downsample convs with torchvision names") {
  auto m = make_model(resnet_config(20, 10, 3, 32, 32, 'B'), 1);
  CHECK(m->name() == "resnet20-B");
  CHECK(shape_of(*m, "layer2.0.downsample.0.weight") == std::vector<std::int64_t>{32, 16, 1, 1});
  CHECK(shape_of(*m, "layer3.0.downsample.1.weight") == std::vector<std::int64_t>{64});
  CHECK(parameter_count(*m) == 269722 + 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64);
  CHECK(m->conv_layers().size() == 21);
}

TEST_CASE("vgg16: names, pooling geometry on 28x28 and 32x32") {
  auto m = make_model(vgg_config(10, 1, 28, 28), 1);
  CHECK(m->name() == "vgg16");
  CHECK(shape_of(*m, "features.0.weight") == std::vector<std::int64_t>{64, 1, 3, 3});
  CHECK(shape_of(*m, "features.1.running_mean") == std::vector<std::int64_t>{64});
  CHECK(shape_of(*m, "features.7.weight") == std::vector<std::int64_t>{128, 64, 3, 3});
  CHECK(shape_of(*m, "features.40.weight") == std::vector<std::int64_t>{512, 512, 3, 3});
  CHECK(shape_of(*m, "classifier.weight") == std::vector<std::int64_t>{10, 512});
  const auto convs = m->conv_layers();
  REQUIRE(convs.size() == 13);
  // 28 → 14 → 7 → 4 (ceil) → 2 → 1.
  const int expect_h[] = {28, 28, 14, 14, 7, 7, 7, 4, 4, 4, 2, 2, 2};
  for (int i = 0; i < 13; ++i) CHECK(convs[static_cast<std::size_t>(i)].h_out == expect_h[i]);
  std::vector<float> x(2 * 28 * 28, 0.5f), logits(20);
  m->forward(x.data(), 2, logits.data(), false);
  for (float v : logits) CHECK(std::isfinite(v));
}

TEST_CASE("config round trip and seeded initialisation") {
  for (const auto& cfg : {resnet_config(32), resnet_config(20, 7, 1, 28, 28, 'B'), vgg_config(5, 3, 16, 16)}) {
    auto a = make_model(cfg, 42);
    auto b = make_model(a->config(), 42);
    auto c = make_model(cfg, 43);
    CHECK(a->config() == cfg);
    auto ta = a->tensors(), tb = b->tensors(), tc = c->tensors();
    REQUIRE(ta.size() == tb.size());
    bool differs = false;
    for (std::size_t i = 0; i < ta.size(); ++i) {
      CHECK(ta[i].name == tb[i].name);
      CHECK(ta[i].shape == tb[i].shape);
      if (ta[i].type != dtype::f32) continue;
      CHECK(std::memcmp(ta[i].data, tb[i].data, ta[i].numel() * sizeof(float)) == 0);
      if (std::memcmp(ta[i].data, tc[i].data, ta[i].numel() * sizeof(float)) != 0) differs = true;
    }
    CHECK(differs);
  }
}

TEST_CASE("initialisation statistics follow kaiming fan_out and PyTorch's Linear default") {
  auto m = make_model(resnet_config(56), 3);
  auto t = by_name(*m);
  // layer3.*.conv weights: std √(2 / (64·9)).
  double sq = 0.0;
  std::size_t count = 0;
  for (auto& [name, v] : t)
    if (name.rfind("layer3.", 0) == 0 && v.shape.size() == 4) {
      for (std::size_t i = 0; i < v.numel(); ++i) sq += std::pow(v.f32()[i], 2);
      count += v.numel();
    }
  CHECK(std::sqrt(sq / static_cast<double>(count)) == doctest::Approx(std::sqrt(2.0 / 576)).epsilon(0.01));
  const auto& fc = t["fc.weight"];
  const float bound = 1.0f / 8.0f;  // 1/√64
  float lo = 1.0f, hi = -1.0f;
  for (std::size_t i = 0; i < fc.numel(); ++i) {
    lo = std::min(lo, fc.f32()[i]);
    hi = std::max(hi, fc.f32()[i]);
  }
  CHECK(lo >= -bound);
  CHECK(hi <= bound);
  CHECK(hi - lo > bound);  // spread over the range
  CHECK(t["layer1.0.bn1.weight"].f32()[3] == 1.0f);
  CHECK(t["layer1.0.bn1.bias"].f32()[3] == 0.0f);
}

TEST_CASE("free widths and option-A channel maps") {
  auto cfg = resnet_config(20, 10, 3, 16, 16);
  cfg["stage_widths"] = {5, 9, 12};
  cfg["block_widths"] = {{3, 7, 2}, {4, 4, 9}, {1, 12, 5}};
  cfg["shortcut_maps"] = {std::vector<int>{}, std::vector<int>{4, -1, 0, 1, -1, 2, 3, -1, -1},
                          std::vector<int>{8, 7, -1, 0, 1, 2, 3, 4, 5, 6, -1, -1}};
  auto m = make_model(cfg, 5);
  CHECK(shape_of(*m, "layer1.0.conv1.weight") == std::vector<std::int64_t>{3, 5, 3, 3});
  CHECK(shape_of(*m, "layer2.0.conv1.weight") == std::vector<std::int64_t>{4, 5, 3, 3});
  CHECK(shape_of(*m, "layer2.0.conv2.weight") == std::vector<std::int64_t>{9, 4, 3, 3});
  CHECK(shape_of(*m, "layer3.0.conv2.weight") == std::vector<std::int64_t>{12, 1, 3, 3});
  CHECK(shape_of(*m, "fc.weight") == std::vector<std::int64_t>{10, 12});
  std::vector<float> x(3 * 3 * 16 * 16, 0.1f), logits(30);
  m->forward(x.data(), 3, logits.data(), true);
  for (float v : logits) CHECK(std::isfinite(v));
  CHECK(m->config() == cfg);

  auto bad = cfg;
  bad["shortcut_maps"][1][0] = 5;  // stream of stage 1 has 5 channels: 0..4
  CHECK_THROWS_AS(make_model(bad), std::invalid_argument);
  bad = cfg;
  bad["block_widths"][0][1] = 0;
  CHECK_THROWS_AS(make_model(bad), std::invalid_argument);
  bad = cfg;
  bad["depth"] = 22;
  CHECK_THROWS_AS(make_model(bad), std::invalid_argument);
  CHECK_THROWS_AS(make_model(nlohmann::json{{"arch", "mlp"}}), std::invalid_argument);
}

TEST_CASE("resnet groups: residual streams and block widths") {
  auto m = make_model(resnet_config(20), 1);
  const auto groups = m->groups();
  REQUIRE(groups.size() == 3 + 9);
  const auto convs = m->conv_layers();
  auto names = [&](const std::vector<int>& idx) {
    std::vector<std::string> out;
    for (int i : idx) out.push_back(convs[static_cast<std::size_t>(i)].name);
    return out;
  };
  CHECK(groups[0].name == "layer1");
  CHECK(groups[0].channels == 16);
  CHECK(names(groups[0].producers) == std::vector<std::string>{"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"});
  CHECK(names(groups[0].consumers) == std::vector<std::string>{"layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1", "layer2.0.conv1"});
  CHECK(groups[0].shortcut_maps == std::vector<std::string>{"shortcut_maps[1]"});
  CHECK(names(groups[1].producers) == std::vector<std::string>{"layer2.0.conv2", "layer2.1.conv2", "layer2.2.conv2"});
  CHECK(groups[2].feeds_classifier);
  CHECK(!groups[1].feeds_classifier);
  CHECK(groups[3].name == "layer1.0");
  CHECK(names(groups[3].producers) == std::vector<std::string>{"layer1.0.conv1"});
  CHECK(names(groups[3].consumers) == std::vector<std::string>{"layer1.0.conv2"});
  auto b = make_model(resnet_config(20, 10, 3, 32, 32, 'B'), 1);
  const auto gb = b->groups();
  const auto cb = b->conv_layers();
  CHECK(cb[static_cast<std::size_t>(gb[1].producers[1])].name == "layer2.0.downsample.0");
  CHECK(cb[static_cast<std::size_t>(gb[0].consumers.back())].name == "layer2.0.downsample.0");
}

TEST_CASE("whole-model gradients by directional finite differences") {
  SUBCASE("tiny resnet, option A, pruned-style widths and maps") {
    auto cfg = resnet_config(14, 4, 2, 8, 8);
    cfg["stage_widths"] = {4, 6, 5};
    cfg["block_widths"] = {{3, 4}, {5, 2}, {3, 4}};
    cfg["shortcut_maps"] = {std::vector<int>{}, std::vector<int>{3, -1, 0, 1, -1, 2}, std::vector<int>{5, 0, -1, 2, 1}};
    auto m = make_model(cfg, seed());
    check_model_gradient(*m, 6, seed() + 1);
  }
  SUBCASE("tiny resnet, option B") {
    auto cfg = resnet_config(8, 3, 1, 7, 7, 'B');
    cfg["stage_widths"] = {3, 5, 4};
    cfg["block_widths"] = {{2}, {3}, {4}};
    auto m = make_model(cfg, seed());
    check_model_gradient(*m, 5, seed() + 2);
  }
  SUBCASE("tiny vgg16") {
    auto cfg = vgg_config(3, 1, 10, 10);
    cfg["widths"] = {3, 4, 4, 3, 5, 3, 4, 3, 2, 4, 3, 3, 4};
    auto m = make_model(cfg, seed());
    check_model_gradient(*m, 6, seed() + 3);
  }
}

TEST_CASE("backward without a train-mode forward is an error") {
  auto m = make_model(resnet_config(8, 3, 1, 8, 8), 1);
  std::vector<float> x(2 * 64, 0.5f), logits(6), d(6, 0.1f);
  CHECK_THROWS_AS(m->backward(d.data()), std::logic_error);
  m->forward(x.data(), 2, logits.data(), false);
  CHECK_THROWS_AS(m->backward(d.data()), std::logic_error);
}
