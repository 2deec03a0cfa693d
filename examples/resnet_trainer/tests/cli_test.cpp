// psap-train's library layer: the hook sequence of train_loop (the pruning
// extension points), in-process checkpoint/resume equality, error paths,
// settings resolution and the progress display.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "cli/checkpoint.hpp"
#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cli/train_loop.hpp"
#include "data/rng.hpp"
#include "models/resnet.hpp"
#include "tests/io_test_util.hpp"

using namespace trainer;
using json = nlohmann::json;
using trainer::testing::scratch_dir;

namespace {

// n images of c x 8 x 8 whose class shows as a bright row: learnable.
dataset toy_data(std::size_t n, int c = 1, std::uint64_t seed = 1) {
  dataset d;
  d.name = "toy";
  d.channels = c;
  d.height = 8;
  d.width = 8;
  d.num_classes = 10;
  d.images.resize(n * d.image_size());
  d.labels.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::uint8_t>(splitmix64(seed + i) % 10);
    d.labels[i] = k;
    for (std::size_t p = 0; p < d.image_size(); ++p)
      d.images[i * d.image_size() + p] = static_cast<std::uint8_t>(splitmix64(seed * 977 + i * 64 + p) % 40);
    for (int x = 0; x < 8; ++x) d.images[i * d.image_size() + static_cast<std::size_t>(k % 8) * 8 + x] = 220;
  }
  compute_channel_stats(d, d.mean, d.std);
  return d;
}

std::unique_ptr<model> toy_model(std::uint64_t seed, int depth = 8, int channels = 1) {
  return make_model(resnet_config(depth, 10, channels, 8, 8, 'A'), seed);
}

loop_config toy_loop(std::int64_t epochs) {
  loop_config c;
  c.epochs = epochs;
  c.schedule.kind = "cosine";
  c.schedule.base_lr = 0.05;
  c.schedule.total_iters = epochs * 5;
  c.train_loader.batch_size = 8;
  c.train_loader.seed = 3;
  c.train_loader.augment = {1, true};
  c.eval_batch_size = 16;
  return c;
}

std::vector<std::vector<std::uint8_t>> snapshot(model& m, sgd& opt) {
  tensor_archive a;
  add_model_tensors(a, m);
  add_optimizer_tensors(a, opt);
  std::vector<std::vector<std::uint8_t>> out;
  for (const auto& [name, t] : a.tensors()) out.push_back(t.bytes);
  return out;
}

float* tensor_of(model& m, const std::string& name) {
  for (const auto& t : m.tensors())
    if (t.name == name) return t.f32();
  return nullptr;
}

// The message of the E that f throws ("" when it throws none).
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// `a` with element i of tensor `name` set to v.
tensor_archive with_value(const tensor_archive& a, const std::string& name, std::size_t i, float v) {
  st_tensor t = a.at(name);
  std::memcpy(t.bytes.data() + i * sizeof(float), &v, sizeof v);
  tensor_archive out = a;
  out.erase(name);
  out.add(name, t.dtype, t.shape, t.bytes);
  return out;
}

}  // namespace

TEST_CASE("train_loop calls the hooks in the documented order") {
  const dataset train = toy_data(40), test = toy_data(16, 1, 99);
  auto m = toy_model(1);
  sgd opt(*m, sgd_options{});
  std::vector<std::string> ev;
  const float* fc_grad = nullptr;
  std::size_t fc_size = 0;
  for (const auto& t : m->tensors())
    if (t.name == "fc.weight") {
      fc_grad = t.grad;
      fc_size = t.numel();
    }
  REQUIRE(fc_grad != nullptr);
  training_hooks h;
  h.begin = [&](const loop_state& s) { ev.push_back("init" + std::to_string(s.epoch)); };
  h.epoch_begin = [&](std::int64_t e, std::size_t n) {
    ev.push_back("begin" + std::to_string(e) + "/" + std::to_string(n));
  };
  h.after_backward = [&](const step_info& s) {
    // The batch's gradients are in the model when observe() runs.
    CHECK(std::any_of(fc_grad, fc_grad + fc_size, [](float g) { return g != 0.0F; }));
    CHECK(s.size == 8);
    ev.push_back("observe" + std::to_string(s.iteration));
  };
  h.after_step = [&](const step_info& s) { ev.push_back("after_update" + std::to_string(s.iteration)); };
  h.epoch_end = [&](std::int64_t e) { ev.push_back("step" + std::to_string(e)); };
  h.on_epoch = [&](const epoch_report& r) {
    CHECK(r.test.has_value());
    CHECK(r.train_images == 40);
    ev.push_back("metrics" + std::to_string(r.epoch));
  };
  h.on_checkpoint = [&](const loop_state& s, const epoch_report&) {
    ev.push_back("checkpoint" + std::to_string(s.epoch) + "@" + std::to_string(s.iteration));
  };
  h.finalize = [&](const loop_state& s) { ev.push_back("finalize" + std::to_string(s.iteration)); };
  const loop_state end = train_loop(*m, opt, train, &test, toy_loop(2), {}, h);
  CHECK(end.epoch == 2);
  CHECK(end.iteration == 10);
  std::vector<std::string> want = {"init0"};
  for (int e = 0; e < 2; ++e) {
    want.push_back("begin" + std::to_string(e) + "/5");
    for (int k = 0; k < 5; ++k) {
      want.push_back("observe" + std::to_string(e * 5 + k));
      want.push_back("after_update" + std::to_string(e * 5 + k));
    }
    want.push_back("step" + std::to_string(e));
    want.push_back("metrics" + std::to_string(e + 1));
    want.push_back("checkpoint" + std::to_string(e + 1) + "@" + std::to_string((e + 1) * 5));
  }
  want.push_back("finalize10");
  CHECK(ev == want);
}

TEST_CASE("train_loop: an after_step hook sees the updated weights (masking works)") {
  const dataset train = toy_data(16);
  auto m = toy_model(2);
  sgd opt(*m, sgd_options{});
  // A "hard pruning" hook: filter 0 of conv1 is zeroed after every update.
  float* w = nullptr;
  std::size_t fan_in = 0;
  for (const auto& t : m->tensors())
    if (t.name == "conv1.weight") {
      w = t.f32();
      fan_in = t.numel() / static_cast<std::size_t>(t.shape[0]);
    }
  REQUIRE(w != nullptr);
  training_hooks h;
  h.after_step = [&](const step_info&) { std::fill(w, w + fan_in, 0.0F); };
  (void)train_loop(*m, opt, train, nullptr, toy_loop(1), {}, h);
  for (std::size_t i = 0; i < fan_in; ++i) CHECK(w[i] == 0.0F);
}

TEST_CASE("train_loop stops at max_iterations mid-epoch") {
  const dataset train = toy_data(40);
  auto m = toy_model(1);
  sgd opt(*m, sgd_options{});
  loop_config c = toy_loop(5);
  c.max_iterations = 7;
  int epochs_seen = 0;
  training_hooks h;
  h.on_epoch = [&](const epoch_report& r) {
    ++epochs_seen;
    CHECK_FALSE(r.test.has_value());
  };
  const loop_state end = train_loop(*m, opt, train, nullptr, c, {}, h);
  CHECK(end.iteration == 7);
  CHECK(end.epoch == 2);
  CHECK(epochs_seen == 2);
}

TEST_CASE("checkpoint round trip: resuming at an epoch boundary is bitwise identical") {
  const dataset train = toy_data(40), test = toy_data(16, 1, 5);
  auto ref = toy_model(11);
  sgd ref_opt(*ref, sgd_options{});
  (void)train_loop(*ref, ref_opt, train, &test, toy_loop(3), {}, {});

  scratch_dir dir;
  const auto path = dir / "last.safetensors";
  auto first = toy_model(11);
  sgd first_opt(*first, sgd_options{});
  checkpoint_meta meta;
  meta.seed = 11;
  meta.model_name = first->name();
  meta.model_config = first->config();
  meta.schedule = toy_loop(3).schedule;
  meta.threads = apply_threads(0);
  training_hooks h;
  h.on_checkpoint = [&](const loop_state& s, const epoch_report&) {
    meta.state = s;
    meta.has_momentum = first_opt.has_momentum();
    save_checkpoint(path, *first, &first_opt, meta, [](tensor_archive& a) {
      a.add<std::uint8_t>("pruner.state", {3}, std::vector<std::uint8_t>{1, 2, 3});
    });
  };
  loop_config one = toy_loop(3);
  one.epochs = 1;  // same schedule, interrupted after the first epoch
  (void)train_loop(*first, first_opt, train, &test, one, {}, h);

  const loaded_checkpoint ck = read_checkpoint(path);
  CHECK(ck.meta.state.epoch == 1);
  CHECK(ck.meta.state.iteration == 5);
  CHECK(ck.meta.has_momentum);
  CHECK(ck.archive.values<std::uint8_t>("pruner.state") == std::vector<std::uint8_t>{1, 2, 3});
  CHECK(ck.archive.contains("optim.momentum.conv1.weight"));
  CHECK(ck.archive.metadata.at("format") == "pt");
  auto resumed = model_from_checkpoint(ck, "ck");  // a fresh process: weights only from the file
  sgd resumed_opt(*resumed, ck.meta.sgd);
  load_optimizer_tensors(ck.archive, resumed_opt, "ck");
  CHECK(resumed_opt.has_momentum());
  (void)train_loop(*resumed, resumed_opt, train, &test, toy_loop(3), ck.meta.state, {});
  CHECK(snapshot(*resumed, resumed_opt) == snapshot(*ref, ref_opt));
}

TEST_CASE("checkpoint content errors name the file and the tensor") {
  scratch_dir dir;
  auto small = toy_model(1, 8);
  checkpoint_meta meta;
  meta.model_config = small->config();
  save_checkpoint(dir / "r8.safetensors", *small, nullptr, meta);
  const loaded_checkpoint ck = read_checkpoint(dir / "r8.safetensors");
  CHECK_FALSE(ck.meta.has_momentum);
  auto bigger = toy_model(1, 14);
  CHECK_THROWS_WITH_AS(load_model_tensors(ck.archive, *bigger, "'r8'"), doctest::Contains("'r8': tensor 'layer1.1"),
                       checkpoint_error);
  auto wide = toy_model(1, 8, 3);
  CHECK_THROWS_WITH_AS(
      load_model_tensors(ck.archive, *wide, "'r8'"),
      doctest::Contains("tensor 'conv1.weight' is F32 [16, 1, 3, 3], model resnet8 expects F32 [16, 3, 3, 3]"),
      checkpoint_error);
  tensor_archive extra = ck.archive;
  extra.add<float>("mystery.weight", {1}, std::vector<float>{1});
  CHECK_THROWS_WITH_AS(load_model_tensors(extra, *small, "'x'"),
                       doctest::Contains("unexpected tensor 'mystery.weight'"), checkpoint_error);
  auto md = ck.archive.metadata;
  md.erase("checkpoint_version");
  CHECK_THROWS_WITH_AS((void)decode_meta(md, "'m'"), doctest::Contains("not a psap-train checkpoint"),
                       checkpoint_error);
  md = ck.archive.metadata;
  md["epoch"] = "three";
  CHECK_THROWS_WITH_AS((void)decode_meta(md, "'m'"), doctest::Contains("'epoch' is not valid JSON"), checkpoint_error);
  md = ck.archive.metadata;
  md["lr_schedule"] = R"({"kind":"warp"})";
  CHECK_THROWS_WITH_AS((void)decode_meta(md, "'m'"), doctest::Contains("warp"), checkpoint_error);
}

TEST_CASE("train_loop errors: diverging loss, data that does not fit the model, inconsistent resume point") {
  const dataset train = toy_data(16);
  auto m = toy_model(1);
  sgd opt(*m, sgd_options{});
  loop_config c = toy_loop(3);
  c.schedule.kind = "constant";
  c.schedule.base_lr = 1e30;
  CHECK_THROWS_WITH_AS((void)train_loop(*m, opt, train, nullptr, c, {}, {}),
                       doctest::Contains("lower the learning rate"), training_error);
  const dataset rgb = toy_data(16, 3);
  auto m2 = toy_model(1);
  sgd opt2(*m2, sgd_options{});
  CHECK_THROWS_WITH_AS((void)train_loop(*m2, opt2, rgb, nullptr, toy_loop(1), {}, {}),
                       doctest::Contains("3x8x8 images but model resnet8 expects 1x8x8"), training_error);
  CHECK_THROWS_WITH_AS((void)train_loop(*m2, opt2, train, nullptr, toy_loop(3), loop_state{1, 3}, {}),
                       doctest::Contains("batch size differs"), training_error);
}

TEST_CASE("train_loop: a NaN or Inf that the epoch's last step writes stops the run before evaluation and saving") {
  // Two batches per epoch; the hook spoils the state after the very last
  // step, whose result no forward pass (so no loss check) ever sees.
  const dataset train = toy_data(16), test = toy_data(16, 1, 7);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  struct spoil {
    const char* tensor;
    bool momentum;
    float value;
    const char* named;
  };
  for (const spoil& c : {spoil{"layer1.0.conv1.weight", false, nan, "tensor 'layer1.0.conv1.weight' holds 1 non-finite value"},
                         spoil{"bn1.running_var", false, inf, "tensor 'bn1.running_var' holds 1 non-finite value"},
                         spoil{"fc.weight", true, -inf, "the momentum buffer of 'fc.weight' holds 1 non-finite value"}}) {
    CAPTURE(c.tensor);
    auto m = toy_model(1);
    sgd opt(*m, sgd_options{});
    float* p = c.momentum ? opt.momentum_buffer(c.tensor) : tensor_of(*m, c.tensor);
    REQUIRE(p != nullptr);
    int evaluated = 0, saved = 0;
    training_hooks h;
    h.after_step = [&](const step_info& s) {
      if (s.iteration == 3) p[2] = c.value;
    };
    h.on_epoch = [&](const epoch_report&) { ++evaluated; };
    h.on_checkpoint = [&](const loop_state&, const epoch_report&) { ++saved; };
    const std::string msg = error_of<training_error>([&] { (void)train_loop(*m, opt, train, &test, toy_loop(2), {}, h); });
    CHECK(has(msg, "after epoch 2"));
    CHECK(has(msg, c.named));
    CHECK(has(msg, "lower the learning rate"));
    CHECK(evaluated == 1);  // epoch 1 only: epoch 2 is neither reported nor saved
    CHECK(saved == 1);
  }
}

TEST_CASE("a non-finite evaluation loss is an error, not a NaN (which JSON writes as null)") {
  const dataset train = toy_data(16), test = toy_data(16, 1, 7);
  auto m = toy_model(1);
  sgd opt(*m, sgd_options{});
  // Finite but huge classifier weights: every logit overflows to +Inf, so
  // the loss is NaN while the state check (finiteness) passes.
  named_tensor fc;
  for (const auto& t : m->tensors())
    if (t.name == "fc.weight") fc = t;
  REQUIRE(fc.f32() != nullptr);
  training_hooks h;
  h.after_step = [&](const step_info& s) {
    if (s.iteration == 1) std::fill(fc.f32(), fc.f32() + fc.numel(), 3e38F);
  };
  const std::string msg = error_of<training_error>([&] { (void)train_loop(*m, opt, train, &test, toy_loop(1), {}, h); });
  CHECK(has(msg, "after epoch 1: the evaluation loss on toy (16 images) is"));
  CHECK(has(msg, "lower learning rate"));
  CHECK_THROWS_WITH_AS((void)evaluate_dataset(*m, test, 8), doctest::Contains("the evaluation loss on toy"), training_error);
}

TEST_CASE("save_checkpoint refuses to write a NaN") {
  scratch_dir dir;
  auto m = toy_model(1);
  checkpoint_meta meta;
  meta.model_config = m->config();
  tensor_of(*m, "bn1.weight")[0] = std::numeric_limits<float>::quiet_NaN();
  const std::string msg = error_of<training_error>([&] { save_checkpoint(dir / "x.safetensors", *m, nullptr, meta); });
  CHECK(has(msg, "x.safetensors"));
  CHECK(has(msg, "tensor 'bn1.weight' holds 1 non-finite value"));
  CHECK_FALSE(std::filesystem::exists(dir / "x.safetensors"));
}

TEST_CASE("loading a checkpoint rejects NaN/Inf values and negative running variances, naming file and tensor") {
  scratch_dir dir;
  auto src = toy_model(1);
  sgd src_opt(*src, sgd_options{});
  src_opt.set_has_momentum(true);
  checkpoint_meta meta;
  meta.model_config = src->config();
  meta.has_momentum = true;
  save_checkpoint(dir / "ok.safetensors", *src, &src_opt, meta);
  loaded_checkpoint ck = read_checkpoint(dir / "ok.safetensors");
  auto m = toy_model(2);
  sgd opt(*m, sgd_options{});
  CHECK_NOTHROW(load_model_tensors(with_value(ck.archive, "bn1.running_var", 0, 0.0F), *m, "'ok'"));  // 0 is a variance
  CHECK_NOTHROW(load_optimizer_tensors(ck.archive, opt, "'ok'"));

  CHECK_THROWS_WITH_AS(
      load_model_tensors(with_value(ck.archive, "conv1.weight", 3, std::numeric_limits<float>::quiet_NaN()), *m, "'ck'"),
      doctest::Contains("'ck': tensor 'conv1.weight' holds a non-finite value (nan at index 3)"), checkpoint_error);
  CHECK_THROWS_WITH_AS(
      load_model_tensors(with_value(ck.archive, "fc.bias", 1, std::numeric_limits<float>::infinity()), *m, "'ck'"),
      doctest::Contains("tensor 'fc.bias' holds a non-finite value (inf at index 1)"), checkpoint_error);
  CHECK_THROWS_WITH_AS(load_model_tensors(with_value(ck.archive, "layer1.0.bn2.running_var", 2, -0.5F), *m, "'ck'"),
                       doctest::Contains("'ck': tensor 'layer1.0.bn2.running_var' holds a negative running variance"),
                       checkpoint_error);
  CHECK_THROWS_WITH_AS(
      load_optimizer_tensors(with_value(ck.archive, "optim.momentum.fc.weight", 0, -std::numeric_limits<float>::infinity()),
                             opt, "'ck'"),
      doctest::Contains("'ck': tensor 'optim.momentum.fc.weight' holds a non-finite value"), checkpoint_error);
  // eval's and --checkpoint's path: the file is named.
  ck.archive = with_value(ck.archive, "bn1.weight", 0, std::numeric_limits<float>::quiet_NaN());
  CHECK_THROWS_WITH_AS((void)model_from_checkpoint(ck, "'bad.safetensors'"),
                       doctest::Contains("'bad.safetensors': tensor 'bn1.weight' holds a non-finite value"),
                       checkpoint_error);
}

TEST_CASE("checkpoint metadata: settings, model_config and metrics must be objects; model_config integers must fit int") {
  scratch_dir dir;
  auto m = toy_model(1);
  checkpoint_meta meta;
  meta.model_config = m->config();
  save_checkpoint(dir / "m.safetensors", *m, nullptr, meta);
  const auto md0 = read_checkpoint(dir / "m.safetensors").archive.metadata;
  CHECK_NOTHROW((void)decode_meta(md0, "'m'"));
  for (const char* key : {"settings", "model_config", "metrics"}) {
    CAPTURE(key);
    auto md = md0;
    md[key] = "[1, 2]";
    const std::string want = "'m.safetensors': metadata entry '" + std::string(key) + "' must be a JSON object, found array";
    CHECK_THROWS_WITH_AS((void)decode_meta(md, "'m.safetensors'"), doctest::Contains(want.c_str()), checkpoint_error);
  }
  json cfg = m->config();
  cfg["in_channels"] = 4294967297LL;  // would be read as 1
  auto md = md0;
  md["model_config"] = cfg.dump();
  CHECK_THROWS_WITH_AS((void)decode_meta(md, "'m'"),
                       doctest::Contains("'m': metadata 'model_config' entry 'in_channels' = 4294967297 does not fit"),
                       checkpoint_error);
  cfg = m->config();
  REQUIRE(cfg["stage_widths"].is_array());
  cfg["stage_widths"][1] = -4294967296LL;
  md["model_config"] = cfg.dump();
  CHECK_THROWS_WITH_AS((void)decode_meta(md, "'m'"),
                       doctest::Contains("entry 'stage_widths[1]' = -4294967296 does not fit"), checkpoint_error);
}

TEST_CASE("settings: NaN/Inf values, negative milestones and overflowing schedule lengths are rejected naming the option") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const auto rejects = [](const json& given, const std::string& what) {
    CAPTURE(given.dump());
    CHECK_THROWS_WITH_AS((void)resolve_settings(given, 40), doctest::Contains(what.c_str()), usage_error);
  };
  rejects({{"gamma", nan}}, "--gamma must be a finite number >= 0, got nan");
  rejects({{"min_lr", nan}}, "--min-lr must be a finite number");
  rejects({{"min_lr", 1e300}}, "--min-lr must be a finite number in [0, 3.4e38], got 1e+300");
  rejects({{"warmup_start", nan}}, "--warmup-start must be a finite number in [0, 1]");
  rejects({{"lr", inf}}, "--lr must be a finite number");
  rejects({{"momentum", nan}}, "--momentum must be a finite number");
  rejects({{"weight_decay", -1.0}}, "--weight-decay must be a finite number");
  rejects({{"milestones", {-5, 3}}, {"schedule", "multistep"}}, "--milestones: -5 is negative");
  rejects({{"milestones", {-5, 3}}}, "--milestones: -5 is negative");  // recorded even when unused
  rejects({{"milestones", {5, 3}}, {"schedule", "multistep"}}, "--milestones must be in increasing order");
  CHECK_NOTHROW((void)resolve_settings({{"milestones", {0, 3}}, {"schedule", "multistep"}}, 40));

  // 40 images in batches of 8: 5 iterations per epoch.
  const dataset train = toy_data(40);
  const std::int64_t huge = std::numeric_limits<std::int64_t>::max() / 4;
  const auto overflows = [&](const json& given, const std::string& what) {
    CAPTURE(given.dump());
    json g = given;
    g["batch_size"] = 8;
    CHECK_THROWS_WITH_AS((void)plan_from_settings(resolve_settings(g, 40), train), doctest::Contains(what.c_str()),
                         usage_error);
  };
  overflows({{"schedule", "step"}, {"step_size", huge}}, "--step-size " + std::to_string(huge) +
                                                               " is too large: at 5 iterations per epoch it overflows");
  overflows({{"warmup", huge}}, "--warmup-epochs " + std::to_string(huge) + " is too large");
  overflows({{"epochs", huge}}, "--epochs " + std::to_string(huge) + " is too large");
  overflows({{"milestones", {1, huge}}, {"schedule", "multistep"}}, "--milestones " + std::to_string(huge));
  // The largest step size that fits still plans (and just never steps).
  const std::int64_t fits = std::numeric_limits<std::int64_t>::max() / 5;
  CHECK(plan_from_settings(resolve_settings({{"schedule", "step"}, {"step_size", fits}, {"batch_size", 8}}, 40), train)
            .loop.schedule.step_size == fits * 5);
}

TEST_CASE("--data NAME FILE: a file where the data directory belongs is named as such") {
  scratch_dir dir;
  trainer::testing::write_bytes(dir / "train.gz", {1, 2, 3});
  CHECK_THROWS_WITH_AS((void)data_options_from(json{{"data", "fashion-mnist"}}, dir / "train.gz"),
                       doctest::Contains("train.gz' is a file, not a directory: pass the directory that holds the "
                                         "fashion-mnist files"),
                       usage_error);
  CHECK(data_options_from(json{{"data", "fashion-mnist"}}, dir.path()).dir == dir.path());
  CHECK(data_options_from(json{{"data", "fashion-mnist"}}, dir / "absent").dir == dir / "absent");  // the loader says it is missing
}

TEST_CASE("dump_json writes bytes that are not UTF-8 (a path like $'u\\xe9') as U+FFFD instead of throwing") {
  const json j = {{"output", std::string("out/u\xe9")}};
  CHECK_THROWS_AS((void)j.dump(), json::type_error);  // why dump_json exists
  CHECK(dump_json(j) == "{\"output\":\"out/u\xef\xbf\xbd\"}");
  CHECK(dump_json(j, 2) == "{\n  \"output\": \"out/u\xef\xbf\xbd\"\n}");
}

TEST_CASE("settings: recipes, scaling with --epochs, iteration-based recipes, errors") {
  const json d = resolve_settings(json::object(), 60000);
  CHECK(d["model"] == "resnet20");
  CHECK(d["data"] == "fashion-mnist");
  CHECK(d["recipe"] == "fashion");
  CHECK(d["epochs"] == 15);
  CHECK(d["schedule"] == "cosine");
  CHECK(d["warmup"] == 1);
  CHECK(d["pad"] == 2);
  CHECK(d["flip"] == true);

  const json c = resolve_settings({{"data", "cifar10"}, {"epochs", 10}}, 50000);
  CHECK(c["recipe"] == "sfp-cifar");
  CHECK(c["milestones"] == std::vector<int>{3, 6, 8});  // 60/120/160 of 200, scaled
  CHECK(c["pad"] == 4);

  const json he = resolve_settings({{"data", "cifar10"}, {"recipe", "he2016"}}, 50000);
  CHECK(he["schedule_unit"] == "iteration");
  CHECK(he["iterations"] == 64000);
  CHECK(he["epochs"] == 164);  // ceil(64000 / 391)
  const json he20 = resolve_settings({{"recipe", "he2016"}, {"epochs", 20}}, 50000);
  CHECK(he20["schedule_unit"] == "epoch");
  CHECK(he20["milestones"] == std::vector<int>{10, 15});

  dataset train = toy_data(40);
  const run_plan p = plan_from_settings(resolve_settings({{"epochs", 4}, {"batch_size", 8}}, 40), train);
  CHECK(p.loop.schedule.total_iters == 20);
  CHECK(p.loop.schedule.warmup_iters == 5);
  CHECK(p.loop.train_loader.batch_size == 8);
  CHECK(p.sgd.nesterov);

  CHECK_THROWS_WITH_AS((void)resolve_settings({{"model", "resnet21"}}, 10), doctest::Contains("unknown model"),
                       usage_error);
  CHECK_THROWS_WITH_AS((void)resolve_settings({{"recipe", "fast"}}, 10), doctest::Contains("sfp-cifar"), usage_error);
  CHECK_THROWS_WITH_AS((void)resolve_settings({{"colour", "red"}}, 10), doctest::Contains("unknown setting"),
                       usage_error);
  CHECK_THROWS_WITH_AS((void)plan_from_settings(resolve_settings({{"schedule", "step"}}, 40), train),
                       doctest::Contains("step_size"), usage_error);
  CHECK(model_config_from(resolve_settings({{"model", "resnet56"}, {"shortcut", "B"}}, 10), train)["depth"] == 56);
  CHECK(model_config_from(resolve_settings({{"model", "vgg16"}}, 10), train)["arch"] == "vgg");
}

TEST_CASE("progress: plain lines when not a terminal, one summary per epoch") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  progress_reporter p(f, progress_mode::automatic, 3, 0.0);
  CHECK(p.mode() == progress_mode::lines);
  p.epoch_begin(0, 2);
  step_info s;
  s.batches = 2;
  s.epoch_images = 8;
  s.epoch_seconds = 0.5;
  s.epoch_loss = 1.25;
  p.batch(s);
  epoch_report r;
  r.epoch = 1;
  r.train_loss = 1.0;
  r.test = eval_result{0.5, 0.75, 10};
  p.epoch_done(r);
  std::rewind(f);
  std::string text;
  for (int ch = std::fgetc(f); ch != EOF; ch = std::fgetc(f)) text += static_cast<char>(ch);
  std::fclose(f);
  CHECK(text.find("epoch 1/3  batch 1/2  loss 1.2500") != std::string::npos);
  CHECK(text.find("test loss 0.5000 acc 75.00%") != std::string::npos);
  CHECK(text.find('\r') == std::string::npos);
  CHECK(format_duration(65) == "1:05");
  CHECK(format_duration(3725) == "1:02:05");
  CHECK(parse_progress_mode("bar") == progress_mode::bar);
  CHECK_THROWS_AS((void)parse_progress_mode("fancy"), std::invalid_argument);
}
