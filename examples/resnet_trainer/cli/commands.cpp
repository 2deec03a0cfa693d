#include "cli/commands.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <limits>
#include <set>
#include <sstream>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "data/loader.hpp"
#include "device/device_model.hpp"
#include "data/registry.hpp"
#include "io/atomic_file.hpp"
#include "models/resnet.hpp"
#include "models/vgg.hpp"
#include "optim/recipe.hpp"

namespace trainer {
namespace {

using json = nlohmann::json;

const std::set<std::string> setting_keys = {
    "model",      "shortcut", "data",         "train_subset", "test_subset",  "standard_stats", "recipe",     "epochs",
    "batch_size", "lr",       "momentum",     "nesterov",     "weight_decay", "schedule",       "milestones", "gamma",
    "step_size",  "warmup",   "warmup_start", "min_lr",       "pad",          "flip",           "seed"};

template <class T>
T pick(const json& given, const char* key, T fallback) {
  if (!given.contains(key)) return fallback;
  try {
    return given.at(key).get<T>();
  } catch (const json::exception&) {
    throw usage_error(std::string("setting '") + key + "' has the wrong type: " + dump_json(given.at(key)));
  }
}

// "resnet20" -> 20; 0 for anything else.
int resnet_depth(const std::string& model) {
  if (model.rfind("resnet", 0) != 0) return 0;
  const std::string digits = model.substr(6);
  if (digits.empty() || digits.size() > 4 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return 0;
  const int d = std::stoi(digits);
  return d >= 8 && (d - 2) % 6 == 0 ? d : 0;
}

// "1e+300" rather than std::to_string's 300 digits.
std::string number_text(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// A real-valued setting in [lo, hi]. Written as !(lo <= v && v <= hi) so NaN,
// which passes CLI11's range checks and every `v < 0` test, is rejected here
// rather than surfacing as a diverged loss at the first batch.
void check_range(const json& s, const char* key, const char* option, double lo, double hi, const char* range) {
  const double v = s.at(key).get<double>();
  if (!(lo <= v && v <= hi))
    throw usage_error(std::string(option) + " must be a finite number " + range + ", got " + number_text(v));
}

// A schedule position in epochs (unit = iterations per epoch) or iterations
// (unit = 1), as iterations; usage_error naming the option when the product
// does not fit the 64-bit iteration counter.
std::int64_t to_iterations(std::int64_t v, std::int64_t unit, const char* option) {
  constexpr auto max = std::numeric_limits<std::int64_t>::max(), min = std::numeric_limits<std::int64_t>::min();
  if (unit > 1 && (v > max / unit || v < min / unit))
    throw usage_error(std::string(option) + " " + std::to_string(v) + " is too large: at " + std::to_string(unit) +
                      " iterations per epoch it overflows the 64-bit iteration count");
  return v * unit;
}

std::int64_t rescale(std::int64_t v, std::int64_t from, std::int64_t to) {
  if (from <= 0 || from == to) return v;
  return static_cast<std::int64_t>(
      std::llround(static_cast<double>(v) * static_cast<double>(to) / static_cast<double>(from)));
}

}  // namespace

json metrics_json(const epoch_report& r) {
  json j = {{"epoch", r.epoch},
            {"iteration", r.iteration},
            {"lr", r.lr},
            {"lr_last", r.lr_last},
            {"train_loss", r.train_loss},
            {"train_acc", r.train_accuracy},
            {"train_images", r.train_images},
            {"test_loss", nullptr},
            {"test_acc", nullptr},
            {"test_images", 0},
            {"images_per_s", r.images_per_second},
            {"train_s", r.train_seconds},
            {"wall_s", r.wall_seconds}};
  if (r.test) {
    j["test_loss"] = r.test->loss;
    j["test_acc"] = r.test->accuracy;
    j["test_images"] = r.test->count;
  }
  return j;
}

// metrics.jsonl keeps only the epochs up to `upto` (a resumed run repeats
// any epoch after its checkpoint), rewritten atomically.
void truncate_metrics(const std::filesystem::path& file, std::int64_t upto) {
  std::string kept;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      if (j.value("epoch", std::int64_t{-1}) <= upto) kept += line + "\n";
    } catch (const json::exception&) {
      // A line torn by a crash mid-write is dropped with the rest.
    }
  }
  write_file_atomic(file,
                    std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(kept.data()), kept.size()));
}

void append_line(const std::filesystem::path& file, const std::string& line) {
  std::ofstream out(file, std::ios::app);
  out << line << '\n';
  out.flush();
  if (!out) throw io_error("cannot append to '" + file.string() + "'");
}

json resolve_settings(const json& given, std::size_t train_images) {
  if (!given.is_object()) throw usage_error("settings must be a JSON object");
  for (const auto& [k, v] : given.items())
    if (!setting_keys.count(k)) throw usage_error("unknown setting '" + k + "'");
  json s;
  s["model"] = pick<std::string>(given, "model", "resnet20");
  const std::string model = s["model"];
  if (model != "vgg16" && resnet_depth(model) == 0)
    throw usage_error("unknown model '" + model +
                      "': expected resnet20, resnet32, resnet44, resnet56, resnet110 "
                      "(any resnet<6n+2>) or vgg16");
  s["shortcut"] = pick<std::string>(given, "shortcut", "A");
  if (s["shortcut"] != "A" && s["shortcut"] != "B")
    throw usage_error("shortcut must be A (zero-padding identity) or B (1x1 conv), got '" +
                      s["shortcut"].get<std::string>() + "'");
  s["data"] = pick<std::string>(given, "data", "fashion-mnist");
  const std::string data = s["data"];
  s["train_subset"] = pick<std::uint64_t>(given, "train_subset", 0);
  s["test_subset"] = pick<std::uint64_t>(given, "test_subset", 0);
  s["standard_stats"] = pick<bool>(given, "standard_stats", false);
  const bool cifar = data == "cifar10";
  s["recipe"] = pick<std::string>(given, "recipe", cifar ? "sfp-cifar" : "fashion");
  recipe r;
  try {
    r = get_recipe(s["recipe"]);
  } catch (const std::invalid_argument& e) {
    throw usage_error(e.what());
  }
  s["batch_size"] = pick<std::uint64_t>(given, "batch_size", static_cast<std::uint64_t>(r.batch_size));
  if (s["batch_size"] == 0) throw usage_error("batch size must be at least 1");
  s["seed"] = pick<std::uint64_t>(given, "seed", 0);
  s["pad"] = pick<int>(given, "pad", cifar ? 4 : 2);
  s["flip"] = pick<bool>(given, "flip", data != "mnist");  // mirrored digits are other digits
  s["lr"] = pick<double>(given, "lr", r.sgd.lr);
  s["momentum"] = pick<double>(given, "momentum", r.sgd.momentum);
  s["nesterov"] = pick<bool>(given, "nesterov", r.sgd.nesterov);
  s["weight_decay"] = pick<double>(given, "weight_decay", r.sgd.weight_decay);
  // The optimizer computes in float: a larger rate would reach it as Inf.
  constexpr double float_max = std::numeric_limits<float>::max();
  check_range(s, "lr", "--lr", 0.0, float_max, "in [0, 3.4e38]");
  check_range(s, "momentum", "--momentum", 0.0, float_max, ">= 0");
  check_range(s, "weight_decay", "--weight-decay", 0.0, float_max, ">= 0");

  const auto bs = s["batch_size"].get<std::uint64_t>();
  const auto ipe = static_cast<std::int64_t>(std::max<std::uint64_t>(1, (train_images + bs - 1) / bs));
  lr_schedule rs = r.schedule;  // positions in epochs (iterations == 0) or iterations
  bool epoch_unit = r.iterations == 0;
  std::int64_t epochs = 0, iterations = 0;
  const bool wants_epochs = given.contains("epochs") || given.contains("milestones") || given.contains("step_size") ||
                            given.contains("warmup");
  const auto rescale_schedule = [&](std::int64_t from, std::int64_t to) {
    for (auto& m : rs.milestones) m = rescale(m, from, to);
    rs.step_size = std::max<std::int64_t>(rs.step_size ? 1 : 0, rescale(rs.step_size, from, to));
    rs.total_iters = to;
  };
  if (!epoch_unit && wants_epochs) {
    // An iteration-based recipe (he2016) asked for in epochs: keep its shape.
    epochs = pick<std::int64_t>(given, "epochs", std::max<std::int64_t>(1, (r.iterations + ipe - 1) / ipe));
    rescale_schedule(r.iterations, epochs);
    rs.warmup_iters = rescale(rs.warmup_iters, r.iterations, epochs);
    epoch_unit = true;
  } else if (epoch_unit) {
    epochs = pick<std::int64_t>(given, "epochs", r.epochs);
    if (epochs != r.epochs) rescale_schedule(r.epochs, epochs);  // warm-up stays as long as in the recipe
  } else {
    iterations = r.iterations;
    epochs = (iterations + ipe - 1) / ipe;
  }
  if (epochs < 1) throw usage_error("epochs must be at least 1");
  if (epoch_unit) rs.warmup_iters = std::min(rs.warmup_iters, epochs - 1);
  s["epochs"] = epochs;
  s["iterations"] = iterations;
  s["schedule_unit"] = epoch_unit ? "epoch" : "iteration";
  s["schedule"] = pick<std::string>(given, "schedule", rs.kind);
  s["milestones"] = pick<std::vector<std::int64_t>>(given, "milestones", rs.milestones);
  s["gamma"] = pick<double>(given, "gamma", rs.gamma);
  s["step_size"] = pick<std::int64_t>(given, "step_size", rs.step_size);
  s["warmup"] = pick<std::int64_t>(given, "warmup", rs.warmup_iters);
  s["warmup_start"] = pick<double>(given, "warmup_start", rs.warmup_start);
  s["min_lr"] = pick<double>(given, "min_lr", rs.min_lr);
  s["total"] = epoch_unit ? epochs : (rs.total_iters > 0 ? rs.total_iters : iterations);
  check_range(s, "gamma", "--gamma", 0.0, std::numeric_limits<double>::max(), ">= 0");
  check_range(s, "min_lr", "--min-lr", 0.0, float_max, "in [0, 3.4e38]");
  check_range(s, "warmup_start", "--warmup-start", 0.0, 1.0, "in [0, 1]");
  if (s["step_size"].get<std::int64_t>() < 0) throw usage_error("--step-size must be >= 1");
  if (s["warmup"].get<std::int64_t>() < 0) throw usage_error("--warmup-epochs must be >= 0");
  const auto milestones = s["milestones"].get<std::vector<std::int64_t>>();
  for (const std::int64_t m : milestones)
    if (m < 0)
      throw usage_error("--milestones: " + std::to_string(m) + " is negative; milestones are the " +
                        (epoch_unit ? "epochs" : "iterations") + " (>= 0) at which the learning rate drops");
  if (s["schedule"] == "multistep" && !std::is_sorted(milestones.begin(), milestones.end()))
    throw usage_error("--milestones must be in increasing order, e.g. 60,120,160");
  return s;
}

data_options data_options_from(const json& settings, const std::filesystem::path& dir) {
  std::error_code ec;
  // The loaders would call an existing file a directory that "does not exist".
  if (!dir.empty() && std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec))
    throw usage_error("data directory " + quoted(dir) + " is a file, not a directory: pass the directory that " +
                      "holds the " + settings.value("data", std::string("data set's")) + " files (--data NAME DIR)");
  data_options o;
  o.name = settings.value("data", std::string("fashion-mnist"));
  o.dir = dir;
  o.train_subset = settings.value("train_subset", std::uint64_t{0});
  o.test_subset = settings.value("test_subset", std::uint64_t{0});
  o.subset_seed = settings.value("seed", std::uint64_t{0});
  o.standard_stats = settings.value("standard_stats", false);
  return o;
}

json model_config_from(const json& settings, const dataset& train) {
  const std::string model = settings.at("model");
  if (model == "vgg16") return vgg_config(train.num_classes, train.channels, train.height, train.width);
  const int depth = resnet_depth(model);
  if (depth == 0) throw usage_error("unknown model '" + model + "'");
  const std::string sc = settings.value("shortcut", std::string("A"));
  return resnet_config(depth, train.num_classes, train.channels, train.height, train.width, sc.at(0));
}

run_plan plan_from_settings(const json& s, const dataset& train) {
  run_plan p;
  p.settings = s;
  try {
    p.seed = s.at("seed").get<std::uint64_t>();
    const auto bs = s.at("batch_size").get<std::uint64_t>();
    const auto ipe = static_cast<std::int64_t>((train.size() + bs - 1) / bs);
    const bool epoch_unit = s.at("schedule_unit") == "epoch";
    const std::int64_t unit = epoch_unit ? ipe : 1;
    lr_schedule ls;
    ls.kind = s.at("schedule");
    ls.base_lr = s.at("lr");
    ls.gamma = s.at("gamma");
    ls.step_size = to_iterations(s.at("step_size").get<std::int64_t>(), unit, "--step-size");
    ls.milestones = s.at("milestones").get<std::vector<std::int64_t>>();
    for (auto& m : ls.milestones) m = to_iterations(m, unit, "--milestones");
    ls.total_iters = to_iterations(s.at("total").get<std::int64_t>(), unit, "--epochs");
    ls.min_lr = s.at("min_lr");
    ls.warmup_iters = to_iterations(s.at("warmup").get<std::int64_t>(), unit, "--warmup-epochs");
    ls.warmup_start = s.at("warmup_start");
    ls.validate();
    p.loop.schedule = ls;
    p.loop.epochs = s.at("epochs");
    p.loop.max_iterations = s.at("iterations");
    p.loop.train_loader.batch_size = bs;
    p.loop.train_loader.shuffle = true;
    p.loop.train_loader.seed = p.seed;
    p.loop.train_loader.augment.pad = s.at("pad");
    p.loop.train_loader.augment.flip = s.at("flip");
    p.sgd.lr = static_cast<float>(s.at("lr").get<double>());
    p.sgd.momentum = static_cast<float>(s.at("momentum").get<double>());
    p.sgd.dampening = 0.0F;
    p.sgd.weight_decay = static_cast<float>(s.at("weight_decay").get<double>());
    p.sgd.nesterov = s.at("nesterov");
  } catch (const json::exception& e) {
    throw usage_error(std::string("incomplete run settings: ") + e.what());
  } catch (const std::invalid_argument& e) {
    throw usage_error(e.what());
  }
  if (p.sgd.nesterov && p.sgd.momentum <= 0.0F) throw usage_error("Nesterov momentum needs --momentum > 0");
  return p;
}

int resolve_threads(int given, int checkpoint_threads) {
  if (given >= 0) return given;
  return checkpoint_threads > 0 ? checkpoint_threads : 0;
}

int apply_threads(int threads) {
#ifdef _OPENMP
  if (threads > 0) omp_set_num_threads(threads);
  return omp_get_max_threads();
#else
  (void)threads;
  return 1;
#endif
}

std::unique_ptr<model> build_model(const json& model_cfg, std::uint64_t seed) {
  try {
    return make_model(model_cfg, seed);
  } catch (const std::invalid_argument& e) {
    throw checkpoint_error(std::string("cannot build the model: ") + e.what());
  }
}

void check_model_matches(const json& given, const checkpoint_meta& meta, const std::filesystem::path& file) {
  if (given.contains("model") && meta.settings.contains("model") && meta.settings["model"] != given["model"])
    throw usage_error("--model " + given["model"].get<std::string>() + " differs from the model of --checkpoint '" + file.string() +
                      "' (" + meta.settings["model"].get<std::string>() + ")");
}

int run_train(const json& given, const runtime_options& rt) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(rt.output, ec);
  if (!fs::is_directory(rt.output)) throw io_error("cannot create output directory '" + rt.output.string() + "'");
  const fs::path last = rt.output / "last.safetensors";
  const fs::path final_path = rt.output / "final.safetensors";
  const fs::path metrics_path = rt.output / "metrics.jsonl";
  remove_stale_temporaries(last);
  remove_stale_temporaries(final_path);

  std::optional<loaded_checkpoint> resume_ck;
  fs::path data_dir = rt.data_dir;
  json settings;
  if (rt.resume) {
    if (!fs::exists(last))
      throw usage_error("--resume: no checkpoint '" + last.string() +
                        "' (a run writes it after its first epoch); start without --resume");
    resume_ck = read_checkpoint(last);
    settings = resume_ck->meta.settings;
    if (data_dir.empty() && resume_ck->meta.extra.count("data_dir")) data_dir = resume_ck->meta.extra.at("data_dir");
  } else if (fs::exists(last)) {
    throw usage_error(quoted(rt.output) +
                      " already holds a run (last.safetensors); pass --resume to continue it, or choose another "
                      "--output");
  }

  const int threads = apply_threads(resolve_threads(rt.threads, resume_ck ? resume_ck->meta.threads : 0));
  const dataset_pair data = load_data(data_options_from(rt.resume ? settings : given, data_dir));

  if (rt.resume) {
    // The checkpoint's settings rule; options given again must agree.
    const json fresh = resolve_settings(given, data.train.size());
    for (const auto& [k, v] : given.items())
      if (fresh.at(k) != settings.value(k, json()))
        throw usage_error("--resume: option " + k + " = " + dump_json(fresh.at(k)) +
                          " differs from the checkpointed run's " + dump_json(settings.value(k, json())) +
                          "; a resumed run continues with its recorded settings: drop the option, or start a new run "
                          "in another --output");
  } else {
    settings = resolve_settings(given, data.train.size());
  }
  const run_plan plan = plan_from_settings(settings, data.train);
  progress_reporter bar(rt.log, rt.progress, plan.loop.epochs);

  json model_cfg;
  std::optional<loaded_checkpoint> init_ck;
  if (resume_ck) {
    model_cfg = resume_ck->meta.model_config;
  } else if (!rt.init_checkpoint.empty()) {
    init_ck = read_checkpoint(rt.init_checkpoint);
    model_cfg = init_ck->meta.model_config;
    check_model_matches(given, init_ck->meta, rt.init_checkpoint);
  } else {
    model_cfg = model_config_from(settings, data.train);
  }
  const std::unique_ptr<model> net = device::place_on(build_model(model_cfg, plan.seed), rt.device);
  sgd opt(*net, plan.sgd);

  loop_state start;
  if (resume_ck) {
    const std::string src = quoted(last);
    load_model_tensors(resume_ck->archive, *net, src);
    load_optimizer_tensors(resume_ck->archive, opt, src);
    start = resume_ck->meta.state;
    if (resume_ck->meta.threads != threads)
      bar.message("warning: the checkpoint was written with " + std::to_string(resume_ck->meta.threads) +
                  " threads, this run uses " + std::to_string(threads) +
                  "; the result will not be bitwise identical to an uninterrupted run (pass --threads " +
                  std::to_string(resume_ck->meta.threads) + ")");
    truncate_metrics(metrics_path, start.epoch);
    bar.message("resuming " + rt.output.string() + " at epoch " + std::to_string(start.epoch) + ", iteration " +
                std::to_string(start.iteration));
  } else {
    if (init_ck) load_model_tensors(init_ck->archive, *net, quoted(rt.init_checkpoint));
    truncate_metrics(metrics_path, -1);
  }

  checkpoint_meta meta;
  meta.seed = plan.seed;
  meta.model_name = net->name();
  meta.model_config = model_cfg;
  meta.settings = settings;
  meta.schedule = plan.loop.schedule;
  meta.sgd = plan.sgd;
  meta.threads = threads;
  if (resume_ck) meta.extra = resume_ck->meta.extra;
  if (!data_dir.empty()) meta.extra["data_dir"] = data_dir.string();
  if (!rt.init_checkpoint.empty()) meta.extra["init_checkpoint"] = rt.init_checkpoint.string();

  {
    const std::string text = dump_json({{"settings", settings}, {"model_config", model_cfg}, {"threads", threads}}, 2);
    write_file_atomic(rt.output / "settings.json",
                      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  }

  bar.message("psap-train: " + net->name() + " (" + std::to_string(parameter_count(*net)) + " parameters) on " +
              data.train.name + " (" + std::to_string(data.train.size()) + " train / " +
              std::to_string(data.test.size()) + " test images), " + std::to_string(plan.loop.epochs) +
              " epochs, batch " + std::to_string(plan.loop.train_loader.batch_size) + ", " + std::to_string(threads) +
              " threads, output " + rt.output.string());

  json last_metrics = resume_ck ? resume_ck->meta.metrics : json::object();
  training_hooks hooks;
  hooks.epoch_begin = [&](std::int64_t e, std::size_t n) { bar.epoch_begin(e, n); };
  hooks.on_batch = [&](const step_info& s) { bar.batch(s); };
  hooks.on_epoch = [&](const epoch_report& r) {
    bar.epoch_done(r);
    last_metrics = metrics_json(r);
    append_line(metrics_path, dump_json(last_metrics));
  };
  hooks.on_checkpoint = [&](const loop_state& st, const epoch_report&) {
    meta.state = st;
    meta.has_momentum = opt.has_momentum();
    meta.metrics = last_metrics;
    save_checkpoint(last, *net, &opt, meta);
  };

  const loop_state end = train_loop(*net, opt, data.train, &data.test, plan.loop, start, hooks);
  meta.state = end;
  meta.has_momentum = opt.has_momentum();
  meta.metrics = last_metrics;
  save_checkpoint(final_path, *net, &opt, meta);
  json summary = {{"output", rt.output.string()}, {"epochs", end.epoch}, {"iterations", end.iteration}};
  summary.update(last_metrics);
  summary["epoch"] = end.epoch;
  std::cout << dump_json(summary) << std::endl;
  return 0;
}

namespace {

// psap-train eval --dump-logits: the images in data set order, as the model
// saw them and as stored, their labels and the eval-mode logits.
void dump_logits(const std::filesystem::path& path, model& net, const dataset& set, std::size_t batch_size,
                 const std::filesystem::path& checkpoint) {
  loader_config lc;
  lc.batch_size = batch_size;
  lc.shuffle = false;
  lc.background = false;
  batch_loader loader(set, lc);
  loader.start_epoch(0);
  const auto classes = static_cast<std::size_t>(net.num_classes());
  std::vector<float> inputs, logits, out;
  std::vector<std::uint8_t> pixels;
  std::vector<std::int64_t> labels;
  batch b;
  while (loader.next(b)) {
    out.resize(b.size * classes);
    net.forward(b.images.data(), static_cast<int>(b.size), out.data(), false);
    inputs.insert(inputs.end(), b.images.begin(), b.images.begin() + static_cast<std::ptrdiff_t>(b.size * set.image_size()));
    logits.insert(logits.end(), out.begin(), out.end());
    for (std::size_t i = 0; i < b.size; ++i) {
      const auto img = set.image(b.indices[i]);
      pixels.insert(pixels.end(), img.begin(), img.end());
      labels.push_back(b.labels[i]);
    }
  }
  const auto n = static_cast<std::uint64_t>(labels.size());
  const std::vector<std::uint64_t> image_shape{n, static_cast<std::uint64_t>(set.channels),
                                               static_cast<std::uint64_t>(set.height), static_cast<std::uint64_t>(set.width)};
  tensor_archive a;
  a.add<float>("inputs", image_shape, inputs);
  a.add<std::uint8_t>("pixels", image_shape, pixels);
  a.add<std::int64_t>("labels", {n}, labels);
  a.add<float>("logits", {n, static_cast<std::uint64_t>(classes)}, logits);
  a.metadata["checkpoint"] = checkpoint.string();
  a.metadata["data"] = set.name;
  a.metadata["model_config"] = dump_json(net.config());
  a.metadata["normalization"] =
      dump_json({{"formula", "(pixels / 255 - mean[c]) / std[c]"}, {"mean", set.mean}, {"std", set.std}});
  save_safetensors(path, a);
}

}  // namespace

int run_eval(const eval_options& opt) {
  const int threads = apply_threads(opt.threads);
  const loaded_checkpoint ck = read_checkpoint(opt.checkpoint);
  const std::string src = quoted(opt.checkpoint);
  std::unique_ptr<model> net = device::place_on(model_from_checkpoint(ck, src), opt.device);
  json s = ck.meta.settings;
  if (opt.data) s["data"] = *opt.data;
  std::filesystem::path dir = opt.data_dir;
  if (dir.empty() && !opt.data && ck.meta.extra.count("data_dir")) dir = ck.meta.extra.at("data_dir");
  data_options d = data_options_from(s, dir);
  d.train_subset = 0;  // statistics come from the full training set anyway
  d.test_subset = opt.test_subset;
  if (opt.split != "test" && opt.split != "train")
    throw usage_error("--split must be 'test' or 'train', got '" + opt.split + "'");
  const dataset_pair data = load_data(d);
  const dataset& set = opt.split == "test" ? data.test : data.train;
  const eval_result r = evaluate_dataset(*net, set, opt.batch_size);
  if (!opt.dump.empty()) dump_logits(opt.dump, *net, set, opt.batch_size, opt.checkpoint);
  const json out = {{"checkpoint", opt.checkpoint.string()},
                    {"model", net->name()},
                    {"data", set.name},
                    {"images", r.count},
                    {"loss", r.loss},
                    {"accuracy", r.accuracy},
                    {"epoch", ck.meta.state.epoch},
                    {"threads", threads}};
  std::cout << dump_json(out) << std::endl;
  return 0;
}

int run_inspect(const std::filesystem::path& file, bool values) {
  const tensor_archive a = load_safetensors(file);
  json t = json::object();
  for (const auto& entry : a.tensors()) {
    const std::string& name = entry.first;
    const st_tensor& x = entry.second;  // not a structured binding: clang 14 cannot capture those
    json e = {{"dtype", std::string(dtype_name(x.dtype))},
              {"shape", x.shape},
              {"crc32", crc32(0L, x.bytes.data(), static_cast<uInt>(x.bytes.size()))}};
    json vals = json::array();
    double sum = 0.0;
    const auto visit = [&](auto tag) {
      using T = decltype(tag);
      std::vector<T> v(x.bytes.size() / sizeof(T));
      if (!v.empty()) std::memcpy(v.data(), x.bytes.data(), x.bytes.size());
      for (const T& y : v) {
        sum += static_cast<double>(y);
        if (values) vals.push_back(y);
      }
    };
    switch (x.dtype) {
      case st_dtype::F32:
        visit(float{});
        break;
      case st_dtype::F64:
        visit(double{});
        break;
      case st_dtype::I64:
        visit(std::int64_t{});
        break;
      case st_dtype::I32:
        visit(std::int32_t{});
        break;
      case st_dtype::U8:
        visit(std::uint8_t{});
        break;
      default:
        break;  // other dtypes: checksum only
    }
    e["sum"] = sum;
    if (values) e["values"] = vals;
    t[name] = e;
  }
  const json out = {{"file", file.string()}, {"metadata", a.metadata}, {"tensors", t}};
  std::cout << dump_json(out) << std::endl;
  return 0;
}

}  // namespace trainer
