// Pruning in the trainer: describing models as psap networks (costs against
// the models' own counts and the literature), the groups of each mode, and
// compaction (the compact model computes what the masked one does, and its
// own counts are psap's predicted pruned costs).
#include <doctest/doctest.h>

#include <psap/psap.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cli/prune_command.hpp"
#include "models/model.hpp"
#include "models/resnet.hpp"
#include "models/vgg.hpp"
#include "nn/rng.hpp"
#include "optim/bn_recalibrate.hpp"
#include "optim/evaluate.hpp"
#include "prune/compact.hpp"
#include "prune/describe.hpp"
#include "trainer_test_util.hpp"

namespace {

using namespace trainer;
using trainer::prune::group_mode;
using json = nlohmann::json;

psap::cost full_cost(const prune::network_description& d) { return psap::cost_model(d.net).full(); }

const psap::group& group_named(const psap::network<float>& net, const std::string& name) {
  return net.groups()[static_cast<std::size_t>(net.find_group(name))];
}

// (layer name, offset) pairs of a group's members or consumers.
std::vector<std::pair<std::string, psap::index>> spans(const psap::network<float>& net, const std::vector<psap::channel_span>& v) {
  std::vector<std::pair<std::string, psap::index>> r;
  for (const auto& s : v) r.push_back({net.layers()[static_cast<std::size_t>(s.layer)].name, s.offset});
  return r;
}

}  // namespace

TEST_CASE("describe: psap's costs equal the models' own MAC and parameter counts") {
  for (const char sc : {'A', 'B'})
    for (const int depth : {20, 56})
      for (const auto mode : {group_mode::internal, group_mode::internal_stream}) {
        CAPTURE(sc);
        CAPTURE(depth);
        auto m = make_model(resnet_config(depth, 10, 3, 32, 32, sc), 1);
        const auto d = prune::describe(*m, mode);
        const psap::cost c = full_cost(d);
        CHECK(c.macs == total_macs(*m));
        CHECK(c.params == parameter_count(*m));
      }
  for (const auto mode : {group_mode::internal, group_mode::internal_stream}) {
    auto v = make_model(vgg_config(10, 3, 32, 32), 1);
    const auto d = prune::describe(*v, mode);
    CHECK(full_cost(d).macs == total_macs(*v));
    CHECK(full_cost(d).params == parameter_count(*v));
  }
}

TEST_CASE("describe: CIFAR ResNet costs match the literature") {
  // ALGORITHMS.md: ResNet-56 (option A) 125,485,696 MACs, 853,018 parameters
  // with BN; ResNet-20 269,722 parameters and 40.55 M MACs. The ResNet-20 MAC
  // count by hand: stem 16*3*9*1024 = 442,368; stage 1, six 16x16 convs at
  // 32x32: 6*2,359,296; stages 2 and 3 each one strided conv (1,179,648) and
  // five full convs (2,359,296); fc 64*10 = 640: 40,551,040.
  auto r56 = make_model(resnet_config(56), 0);
  const auto c56 = full_cost(prune::describe(*r56, group_mode::internal_stream));
  CHECK(c56.macs == 125485696);
  CHECK(c56.params == 853018);
  auto r20 = make_model(resnet_config(20), 0);
  const auto c20 = full_cost(prune::describe(*r20, group_mode::internal));
  CHECK(c20.macs == 442368 + 6 * 2359296 + 2 * (1179648 + 5 * 2359296) + 640);
  CHECK(c20.params == 269722);
}

TEST_CASE("describe: internal groups, one per block; layers carry every view") {
  auto m = make_model(resnet_config(20), 0);
  const auto d = prune::describe(*m, group_mode::internal);
  REQUIRE(d.net.groups().size() == 9);
  const auto& g = group_named(d.net, "layer2.1");
  CHECK(g.size == 32);
  CHECK(spans(d.net, g.members) == std::vector<std::pair<std::string, psap::index>>{{"layer2.1.conv1", 0}});
  CHECK(spans(d.net, g.consumers) == std::vector<std::pair<std::string, psap::index>>{{"layer2.1.conv2", 0}});
  const auto& l = d.net.layers()[static_cast<std::size_t>(d.net.find_layer("layer2.1.conv1"))];
  REQUIRE(l.bn.has_value());
  CHECK(!l.bn->gate_grad.empty());
  CHECK(!l.bn->grad_gamma.empty());
  CHECK(!l.bn->running_var.empty());
  CHECK(l.out_positions == 16 * 16);
  CHECK(l.kernel_area == 9);
  CHECK(d.net.layers().back().name == "fc");
  CHECK(d.net.layers().back().out_positions == 1);
}

TEST_CASE("describe: option-A streams are groups of channel lineages") {
  auto m = make_model(resnet_config(20), 0);
  const auto d = prune::describe(*m, group_mode::internal_stream);
  REQUIRE(d.net.groups().size() == 12);
  using spans_t = std::vector<std::pair<std::string, psap::index>>;
  const auto& s1 = group_named(d.net, "stream.1");
  CHECK(s1.size == 16);
  CHECK(spans(d.net, s1.members) == spans_t{{"conv1", 0},          {"layer1.0.conv2", 0}, {"layer1.1.conv2", 0},
                                            {"layer1.2.conv2", 0}, {"layer2.0.conv2", 0}, {"layer2.1.conv2", 0},
                                            {"layer2.2.conv2", 0}, {"layer3.0.conv2", 0}, {"layer3.1.conv2", 0},
                                            {"layer3.2.conv2", 0}});
  CHECK(spans(d.net, s1.consumers) == spans_t{{"layer1.0.conv1", 0}, {"layer1.1.conv1", 0}, {"layer1.2.conv1", 0},
                                              {"layer2.0.conv1", 0}, {"layer2.1.conv1", 0}, {"layer2.2.conv1", 0},
                                              {"layer3.0.conv1", 0}, {"layer3.1.conv1", 0}, {"layer3.2.conv1", 0},
                                              {"fc", 0}});
  const auto& s2 = group_named(d.net, "stream.2");
  CHECK(s2.size == 16);
  CHECK(spans(d.net, s2.members) == spans_t{{"layer2.0.conv2", 16}, {"layer2.1.conv2", 16}, {"layer2.2.conv2", 16},
                                            {"layer3.0.conv2", 16}, {"layer3.1.conv2", 16}, {"layer3.2.conv2", 16}});
  // layer2.0.conv1 reads the stage-1 stream, not these channels.
  CHECK(spans(d.net, s2.consumers) == spans_t{{"layer2.1.conv1", 16}, {"layer2.2.conv1", 16}, {"layer3.0.conv1", 16},
                                              {"layer3.1.conv1", 16}, {"layer3.2.conv1", 16}, {"fc", 16}});
  const auto& s3 = group_named(d.net, "stream.3");
  CHECK(s3.size == 32);
  CHECK(spans(d.net, s3.members) == spans_t{{"layer3.0.conv2", 32}, {"layer3.1.conv2", 32}, {"layer3.2.conv2", 32}});
  CHECK(spans(d.net, s3.consumers) == spans_t{{"layer3.1.conv1", 32}, {"layer3.2.conv1", 32}, {"fc", 32}});
}

TEST_CASE("describe: option-B streams include the projections; VGG has one group per conv") {
  auto m = make_model(resnet_config(20, 10, 3, 32, 32, 'B'), 0);
  const auto d = prune::describe(*m, group_mode::internal_stream);
  const auto& s2 = group_named(d.net, "stream.2");
  CHECK(s2.size == 32);
  CHECK(s2.members.size() == 4);  // layer2.0.downsample.0 and three conv2
  CHECK(d.net.layers()[static_cast<std::size_t>(s2.members[0].layer)].name == "layer2.0.downsample.0");
  // layer2.1.conv1, layer2.2.conv1, and the transition into stage 3: layer3.0.conv1 and its projection
  CHECK(s2.consumers.size() == 4);
  auto v = make_model(vgg_config(10, 1, 28, 28), 0);
  const auto dv = prune::describe(*v, group_mode::internal);
  REQUIRE(dv.net.groups().size() == 13);
  CHECK(dv.net.groups()[12].name == "features.40");
  CHECK(spans(dv.net, dv.net.groups()[12].consumers) == std::vector<std::pair<std::string, psap::index>>{{"classifier", 0}});
}

TEST_CASE("describe: shortcut maps that copy a channel twice cannot be stream groups") {
  json cfg = resnet_config(8, 10, 1, 16, 16, 'A');
  auto maps = cfg["shortcut_maps"].get<std::vector<std::vector<int>>>();
  maps[1][20] = 3;  // channel 3 of stage 1 feeds channels 3 and 20 of stage 2
  cfg["shortcut_maps"] = maps;
  auto m = make_model(cfg, 0);
  CHECK_NOTHROW(prune::describe(*m, group_mode::internal));
  CHECK_THROWS_WITH_AS(prune::describe(*m, group_mode::internal_stream),
                       doctest::Contains("use --groups internal"), std::invalid_argument);
}

// --------------------------------------------------------------------------
// Compaction

namespace {

// Random input images (n x C x H x W).
std::vector<float> random_images(const model& m, int n, std::uint64_t seed) {
  rng g(seed);
  std::vector<float> x(static_cast<std::size_t>(n) * static_cast<std::size_t>(m.in_channels() * m.input_h() * m.input_w()));
  for (auto& v : x) v = static_cast<float>(g.normal());
  return x;
}

// A network in a state training would leave it in: BN running statistics
// from data (so eval mode is well scaled), γ and β away from their init.
void make_realistic(model& m, std::uint64_t seed) {
  rng g(seed);
  for (auto& b : m.bn_layers())
    for (int c = 0; c < b.bn->channels(); ++c) {
      b.bn->gamma()[c] = static_cast<float>(0.5 + g.uniform());
      b.bn->beta()[c] = static_cast<float>(0.3 * g.normal());
    }
  const int n = 8;
  const auto x = random_images(m, 4 * n, seed + 1);
  const std::size_t per = x.size() / 4;
  int k = 0;
  recalibrate_bn(
      m,
      [&](const float*& images, const std::int32_t*& labels, int& count) {
        if (k == 4) return false;
        images = x.data() + static_cast<std::size_t>(k++) * per;
        labels = nullptr;
        count = n;
        return true;
      },
      4);
}

struct compaction_case {
  json config;
  group_mode mode;
  std::string reconstruct;
  double target = 0.4;
};

struct compaction_outcome {
  double max_diff = 0;
  prune::compaction c;
  psap::pruning_result result;
};

compaction_outcome run_compaction(const compaction_case& k) {
  auto m = make_model(k.config, test::seed());
  make_realistic(*m, test::seed() + 7);
  auto d = prune::describe(*m, k.mode);
  auto pruner = psap::make_pruner(json{{"schedule", "uniform"},
                                       {"criterion", "l2_norm"},
                                       {"protect", "none"},
                                       {"reconstruct", k.reconstruct},
                                       {"budget", {{"kind", "flops"}, {"target", k.target}}},
                                       {"total_epochs", 1}});
  pruner.step(d.net, 1);
  compaction_outcome o;
  o.result = pruner.finalize(d.net);
  o.c = prune::compact(*m, d, o.result);
  const auto x = random_images(*m, 6, test::seed() + 11);
  o.max_diff = prune::max_abs_logit_diff(*m, *o.c.net, x.data(), 6);
  // The compact model's own counts are psap's predicted pruned costs.
  CHECK(total_macs(*o.c.net) == o.result.after.macs);
  CHECK(parameter_count(*o.c.net) == o.result.after.params);
  CHECK(o.result.reduction(psap::budget_kind::flops) >= k.target);
  // Every group lost channels.
  for (const auto& g : o.result.groups) CHECK(static_cast<psap::index>(g.kept.size()) < g.size);
  return o;
}

json small_vgg() {
  json v = vgg_config(10, 3, 32, 32);
  v["widths"] = std::vector<int>{8, 8, 16, 16, 16, 16, 16, 24, 24, 24, 24, 24, 24};
  return v;
}

}  // namespace

TEST_CASE("compact: gated and hard-pruned channels are removed exactly") {
  const std::vector<std::pair<std::string, json>> nets = {{"resnet20-A", resnet_config(20, 10, 3, 16, 16, 'A')},
                                                          {"resnet20-B", resnet_config(20, 10, 3, 16, 16, 'B')},
                                                          {"vgg16-small", small_vgg()}};
  for (const auto& net : nets)  // not a structured binding: clang 14 cannot capture those (CAPTURE)
    for (const auto mode : {group_mode::internal, group_mode::internal_stream})
      for (const char* rec : {"protective", "hard", "decay"}) {
        const std::string& name = net.first;
        const json& cfg = net.second;
        CAPTURE(name);
        CAPTURE(prune::to_string(mode));
        CAPTURE(rec);
        const auto o = run_compaction({cfg, mode, rec});
        CHECK(o.max_diff <= 1e-5);
        CHECK(o.c.removed_zero > 0);
        CHECK(o.c.removed_constant == 0);
        CHECK(o.c.bias_maps.empty());
        std::printf("compact %-12s %-16s %-10s max |logit diff| %.3g\n", name.c_str(), prune::to_string(mode).c_str(), rec,
                    o.max_diff);
      }
}

TEST_CASE("compact: soft-pruned channels fold their constants into bias maps") {
  const std::vector<std::pair<std::string, json>> nets = {{"resnet20-A", resnet_config(20, 10, 3, 16, 16, 'A')},
                                                          {"resnet20-B", resnet_config(20, 10, 3, 16, 16, 'B')},
                                                          {"vgg16-small", small_vgg()}};
  for (const auto& net : nets) {
    const std::string& name = net.first;
    const json& cfg = net.second;
    CAPTURE(name);
    const auto o = run_compaction({cfg, group_mode::internal, "soft"});
    CHECK(o.max_diff <= 1e-5);
    CHECK(o.c.removed_constant > 0);
    CHECK(!o.c.bias_maps.empty());
    CHECK(o.c.config.contains("bias_maps"));
    std::printf("compact %-12s %-16s %-10s max |logit diff| %.3g (%lld constants folded into %zu layers)\n", name.c_str(),
                "internal", "soft", o.max_diff, static_cast<long long>(o.c.removed_constant), o.c.bias_maps.size());
  }
}

TEST_CASE("compact: without folding, soft pruning would change the network") {
  // The independent check that the folds matter: drop the bias maps and the
  // outputs differ.
  const json cfg = resnet_config(8, 10, 3, 16, 16, 'A');
  auto o = run_compaction({cfg, group_mode::internal, "soft"});
  REQUIRE(o.c.removed_constant > 0);
  for (auto& t : o.c.net->tensors())
    if (t.name.ends_with(".bias_map")) std::fill(t.f32(), t.f32() + t.numel(), 0.0f);
  auto m = make_model(cfg, test::seed());
  make_realistic(*m, test::seed() + 7);
  auto d = prune::describe(*m, group_mode::internal);
  auto pruner = psap::make_pruner(json{{"schedule", "uniform"}, {"criterion", "l2_norm"}, {"protect", "none"},
                                       {"reconstruct", "soft"}, {"budget", 0.4}, {"total_epochs", 1}});
  pruner.step(d.net, 1);
  const auto x = random_images(*m, 6, test::seed() + 11);
  CHECK(prune::max_abs_logit_diff(*m, *o.c.net, x.data(), 6) > 1e-3);
}

TEST_CASE("compact: soft pruning of residual streams is refused") {
  const json cfg = resnet_config(8, 10, 3, 16, 16, 'A');
  auto m = make_model(cfg, test::seed());
  make_realistic(*m, test::seed() + 7);
  auto d = prune::describe(*m, group_mode::internal_stream);
  auto pruner = psap::make_pruner(json{{"schedule", "uniform"}, {"criterion", "l2_norm"}, {"protect", "none"},
                                       {"reconstruct", "soft"}, {"budget", 0.4}, {"total_epochs", 1}});
  pruner.step(d.net, 1);
  const auto r = pruner.finalize(d.net);
  CHECK_THROWS_WITH_AS(prune::compact(*m, d, r), doctest::Contains("residual stream"), prune::compaction_error);
}

TEST_CASE("compact: option-A streams with a non-default shortcut map") {
  // akamaster's layout pads both sides: stage-2 channel j takes stage-1
  // channel j - 8 for 8 <= j < 24. The lineages then sit at offset 8.
  json cfg = resnet_config(14, 10, 3, 16, 16, 'A');
  auto maps = cfg["shortcut_maps"].get<std::vector<std::vector<int>>>();
  for (std::size_t s = 1; s < maps.size(); ++s) {
    const int in = cfg["stage_widths"][s - 1], out = cfg["stage_widths"][s], pad = (out - in) / 2;
    for (int j = 0; j < out; ++j) maps[s][static_cast<std::size_t>(j)] = j >= pad && j < pad + in ? j - pad : -1;
  }
  cfg["shortcut_maps"] = maps;
  auto m = make_model(cfg, 0);
  const auto d = prune::describe(*m, group_mode::internal_stream);
  const auto& s1 = group_named(d.net, "stream.1");
  CHECK(s1.size == 16);
  // stage 1 at offset 0, stage 2 at 8, stage 3 at 8 + 16 = 24
  CHECK(spans(d.net, s1.members).back() == std::pair<std::string, psap::index>{"layer3.1.conv2", 24});
  // stage-2-born channels: [0,8) and [24,32) of stage 2 — two runs
  CHECK(d.net.groups().size() == 6 + 5);
  for (const char* rec : {"protective", "hard"}) {
    CAPTURE(rec);
    const auto o = run_compaction({cfg, group_mode::internal_stream, rec});
    CHECK(o.max_diff <= 1e-5);
    // The renumbered maps keep the lineages: every map entry of the compact
    // model points at a kept channel.
    for (const auto& mp : o.c.config["shortcut_maps"])
      for (const auto& v : mp) CHECK(v.get<int>() >= -1);
  }
}

TEST_CASE("compact: the compact checkpoint config round-trips through make_model") {
  const auto o = run_compaction({resnet_config(8, 10, 3, 16, 16, 'A'), group_mode::internal, "soft"});
  auto again = make_model(o.c.config, 0);
  CHECK(again->config() == o.c.config);
  // Same tensors by name and shape (bias maps included).
  auto a = o.c.net->tensors();
  auto b = again->tensors();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].name == b[i].name);
    CHECK(a[i].shape == b[i].shape);
  }
}

TEST_CASE("compact: a compact network with bias maps can be pruned and compacted again") {
  // Round 1 leaves bias maps in the compact model; round 2 prunes that model
  // (soft again), so its consumers' existing maps are sliced and added to.
  auto o1 = run_compaction({resnet_config(8, 10, 3, 16, 16, 'A'), group_mode::internal, "soft"});
  REQUIRE(!o1.c.bias_maps.empty());
  model& m = *o1.c.net;
  auto d = prune::describe(m, group_mode::internal);
  auto pruner = psap::make_pruner(json{{"schedule", "uniform"}, {"criterion", "l2_norm"}, {"protect", "none"},
                                       {"reconstruct", "soft"}, {"budget", 0.3}, {"total_epochs", 1}});
  pruner.step(d.net, 1);
  const auto r = pruner.finalize(d.net);
  const auto c2 = prune::compact(m, d, r);
  CHECK(c2.removed_constant > 0);
  const auto x = random_images(m, 6, test::seed() + 13);
  CHECK(prune::max_abs_logit_diff(m, *c2.net, x.data(), 6) <= 1e-5);
  CHECK(total_macs(*c2.net) == r.after.macs);
}

// --------------------------------------------------------------------------
// The prune command's configuration

TEST_CASE("prune options: defaults, validation, exclusive --preset/--config") {
  const json r = resolve_prune_options(json::object());
  CHECK(r["preset"] == "psap");
  CHECK(r["groups"] == "internal");
  CHECK(r["finetune_epochs"] == 0);
  CHECK(r["recalibrate_batches"] == 16);
  CHECK(r["init_step"] == true);
  CHECK(r["budget"].is_null());
  CHECK_THROWS_WITH_AS((void)resolve_prune_options({{"preset", "sfpp"}}), doctest::Contains("known: psap"), usage_error);
  CHECK_THROWS_WITH_AS((void)resolve_prune_options({{"budget", 1.0}}), doctest::Contains("outside [0, 1)"), usage_error);
  CHECK_THROWS_WITH_AS((void)resolve_prune_options({{"groups", "stream"}}), doctest::Contains("internal+stream"), usage_error);
  CHECK_THROWS_AS((void)resolve_prune_options({{"preset", "sfp"}, {"config", json::object()}}), usage_error);
  CHECK_THROWS_WITH_AS((void)resolve_prune_options({{"budgett", 0.5}}), doctest::Contains("unknown prune option"), usage_error);
}

TEST_CASE("prune options: --set overrides with dotted keys") {
  json cfg = {{"preset", "psap"}, {"schedule", "uniform"}};
  apply_pruner_override(cfg, "protect.kappa=4");
  apply_pruner_override(cfg, "schedule.p_max=0.7");  // a policy given by name gains parameters
  apply_pruner_override(cfg, "reconstruct=hard");     // not JSON: a name
  apply_pruner_override(cfg, "final_phase=0");
  CHECK(cfg["protect"] == json{{"kappa", 4}});
  CHECK(cfg["schedule"] == json{{"name", "uniform"}, {"p_max", 0.7}});
  CHECK(cfg["reconstruct"] == "hard");
  CHECK(cfg["final_phase"] == 0);
  CHECK_THROWS_WITH_AS(apply_pruner_override(cfg, "kappa"), doctest::Contains("key=value"), usage_error);
  CHECK_THROWS_AS(apply_pruner_override(cfg, "=3"), usage_error);
  CHECK_THROWS_AS(apply_pruner_override(cfg, "protect..kappa=3"), usage_error);
}

TEST_CASE("prune options: the pruner configuration of a run") {
  json o = resolve_prune_options({{"preset", "random"}, {"budget", 0.7}, {"budget_kind", "params"}, {"set", {"schedule.p_max=0.9"}}});
  const json cfg = pruner_config(o, 12, 42);
  CHECK(cfg["budget"] == json{{"kind", "params"}, {"target", 0.7}});
  CHECK(cfg["total_epochs"] == 12);
  CHECK(cfg["criterion"]["seed"] == 42);  // the random criterion takes the run's seed
  const json d = psap::describe(psap::make_pruner(cfg));
  CHECK(d["criterion"]["seed"] == 42);
  CHECK(d["schedule"]["p_max"] == 0.9);
  // A seed the user gave is kept; a config file's budget stays unless overridden.
  o = resolve_prune_options({{"config", {{"preset", "random"}, {"criterion", {{"seed", 5}}}, {"budget", 0.3}}}});
  const json c2 = pruner_config(o, 3, 42);
  CHECK(c2["criterion"]["seed"] == 5);
  CHECK(c2["budget"] == 0.3);
  // --budget-kind alone keeps the file's target.
  const json file = {{"preset", "sfp"}, {"budget", {{"kind", "flops"}, {"target", 0.3}}}};
  o = resolve_prune_options(json{{"config", file}, {"budget_kind", "filters"}});
  CHECK(pruner_config(o, 3, 0)["budget"] == json{{"kind", "filters"}, {"target", 0.3}});
  // psap's own messages reach the user.
  o = resolve_prune_options({{"set", {"schedule.etta=1"}}});
  CHECK_THROWS_WITH_AS((void)pruner_config(o, 3, 0), doctest::Contains("no parameter 'etta'"), usage_error);
}

TEST_CASE("prune plan: soft reconstruction is refused with stream groups and with fine-tuning") {
  const json soft = psap::describe(psap::make_pruner(json{{"preset", "sfp"}}));
  const json gate = psap::describe(psap::make_pruner(json{{"preset", "psap"}}));
  CHECK_THROWS_WITH_AS(check_prune_plan(soft, group_mode::internal_stream, true, 0), doctest::Contains("residual stream"),
                       usage_error);
  CHECK_NOTHROW(check_prune_plan(soft, group_mode::internal_stream, false, 0));  // VGG: no streams
  CHECK_NOTHROW(check_prune_plan(soft, group_mode::internal, true, 0));
  CHECK_THROWS_WITH_AS(check_prune_plan(soft, group_mode::internal, true, 3), doctest::Contains("regrow"), usage_error);
  CHECK_NOTHROW(check_prune_plan(gate, group_mode::internal_stream, true, 3));
}
