#include "cli/prune_command.hpp"

#include <psap/psap.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <utility>
#include <vector>

#include "device/device_model.hpp"
#include "io/atomic_file.hpp"
#include "optim/bn_recalibrate.hpp"
#include "prune/compact.hpp"

namespace trainer {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

constexpr int prune_meta_version = 1;
constexpr const char* prune_meta_key = "prune";       // checkpoint metadata entry (JSON text)
constexpr const char* state_tensor = "pruner.state";  // U8 tensor: psap's pruner.state()
constexpr std::uint64_t finetune_seed_salt = 0x66696e6574756e65ULL;  // data order of the fine-tune epochs
constexpr int compact_check_images = 100;

const std::set<std::string> prune_keys = {"preset",          "config",      "set",
                                          "budget",          "budget_kind", "groups",
                                          "finetune_epochs", "finetune_lr", "recalibrate_batches",
                                          "init_step"};

void write_text(const fs::path& p, const std::string& text) {
  write_file_atomic(p, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

json number_or_null(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

std::optional<double> optional_number(const json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  return j.at(key).get<double>();
}

double seconds_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

// What a prune run records in its checkpoints besides the trainer's own
// metadata (metadata entry "prune", JSON text).
struct prune_progress {
  std::string phase = "prune";   // "prune": pruning epochs; "finetune": after recalibration
  loop_state prune_end;          // where the pruning epochs ended (phase finetune)
  loop_state finetune;           // fine-tune loop state (phase finetune)
  std::optional<double> before_last_step, after_last_step, after_recalibration;
  double wall_seconds = 0.0;     // of the run so far, over all processes
  std::int64_t init_epochs = 0;  // epochs consumed by the --checkpoint the run started from

  json to_json(const json& options, const json& pruner_cfg) const {
    return {{"version", prune_meta_version},
            {"options", options},
            {"pruner_config", pruner_cfg},
            {"phase", phase},
            {"prune_end", {{"epoch", prune_end.epoch}, {"iteration", prune_end.iteration}}},
            {"finetune", {{"epoch", finetune.epoch}, {"iteration", finetune.iteration}}},
            {"accuracy",
             {{"before_last_step", number_or_null(before_last_step)},
              {"after_last_step", number_or_null(after_last_step)},
              {"after_recalibration", number_or_null(after_recalibration)}}},
            {"wall_seconds", wall_seconds},
            {"init_epochs", init_epochs}};
  }
  static prune_progress from_json(const json& j, const std::string& source) {
    try {
      if (j.at("version").get<int>() != prune_meta_version)
        throw checkpoint_error(source + ": prune metadata version " + dump_json(j.at("version")) + ", this psap-train reads " +
                               std::to_string(prune_meta_version));
      prune_progress p;
      p.phase = j.at("phase").get<std::string>();
      p.prune_end = {j.at("prune_end").at("epoch").get<std::int64_t>(), j.at("prune_end").at("iteration").get<std::int64_t>()};
      p.finetune = {j.at("finetune").at("epoch").get<std::int64_t>(), j.at("finetune").at("iteration").get<std::int64_t>()};
      const json& a = j.at("accuracy");
      p.before_last_step = optional_number(a, "before_last_step");
      p.after_last_step = optional_number(a, "after_last_step");
      p.after_recalibration = optional_number(a, "after_recalibration");
      p.wall_seconds = j.at("wall_seconds").get<double>();
      p.init_epochs = j.at("init_epochs").get<std::int64_t>();
      if (p.phase != "prune" && p.phase != "finetune") throw checkpoint_error(source + ": unknown prune phase '" + p.phase + "'");
      return p;
    } catch (const json::exception& e) {
      throw checkpoint_error(source + ": bad \"prune\" metadata (" + std::string(e.what()) + ")");
    }
  }
};

// Sum of restores over the groups of one step.
psap::index restores_of(const psap::step_log& s) {
  psap::index r = 0;
  for (const auto& g : s.groups) r += g.restored;
  return r;
}

std::string step_line(const psap::step_log& s, psap::budget_kind kind) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(3);
  os << "prune step " << s.step << " (epoch " << s.epoch << "): budget " << s.budget_now << ", " << psap::to_string(kind)
     << " -" << 100.0 * s.reduction << "%, churn " << s.churn() << ", restored " << restores_of(s)
     << (s.frozen ? ", frozen" : "");
  return os.str();
}

json step_fields(const psap::step_log& s) {
  return {{"prune_step", s.step},       {"budget", s.budget_now},      {"reduction", s.reduction},
          {"churn", s.churn()},         {"restored", restores_of(s)},  {"frozen", s.frozen},
          {"macs", s.achieved.macs},    {"params", s.achieved.params}, {"filters", s.achieved.filters}};
}

// The first `n` (at most) test images, normalised, for the compact check.
std::vector<float> check_batch(const dataset& test, int n, int& got) {
  loader_config cfg;
  cfg.batch_size = static_cast<std::size_t>(std::max(1, n));
  cfg.shuffle = false;
  cfg.background = false;
  batch_loader loader(test, cfg);
  batch b;
  loader.make_batch(0, 0, b);
  got = static_cast<int>(b.size);
  return b.images;
}

}  // namespace

std::vector<std::string> pruner_preset_names() { return {psap::presets::names.begin(), psap::presets::names.end()}; }

json resolve_prune_options(const json& given) {
  if (!given.is_object()) throw usage_error("prune options must be a JSON object");
  for (const auto& [k, v] : given.items())
    if (!prune_keys.count(k)) throw usage_error("unknown prune option '" + k + "'");
  if (given.contains("preset") && given.contains("config"))
    throw usage_error("--preset and --config exclude each other; put \"preset\" into the --config file instead");
  json r;
  try {
    r["preset"] = given.contains("config") ? json(nullptr) : json(given.value("preset", std::string("psap")));
    r["config"] = given.value("config", json(nullptr));
    if (!r["config"].is_null() && !r["config"].is_object())
      throw usage_error("--config: the file must hold one JSON object (psap::make_pruner's configuration)");
    r["set"] = given.value("set", std::vector<std::string>{});
    r["budget"] = given.contains("budget") ? json(given.at("budget").get<double>()) : json(nullptr);
    r["budget_kind"] = given.contains("budget_kind") ? json(given.at("budget_kind").get<std::string>()) : json(nullptr);
    r["groups"] = given.value("groups", std::string("internal"));
    r["finetune_epochs"] = given.value("finetune_epochs", std::int64_t{0});
    r["finetune_lr"] = given.contains("finetune_lr") ? json(given.at("finetune_lr").get<double>()) : json(nullptr);
    r["recalibrate_batches"] = given.value("recalibrate_batches", std::int64_t{16});
    r["init_step"] = given.value("init_step", true);
  } catch (const json::exception& e) {
    throw usage_error(std::string("a prune option has the wrong type: ") + e.what());
  }
  if (r["preset"].is_string()) {
    const std::string p = r["preset"];
    if (std::find(psap::presets::names.begin(), psap::presets::names.end(), p) == psap::presets::names.end()) {
      std::string known;
      for (auto n : psap::presets::names) known += (known.empty() ? "" : ", ") + std::string(n);
      throw usage_error("unknown preset '" + p + "'; known: " + known);
    }
  }
  if (!r["budget"].is_null() && !(r["budget"].get<double>() >= 0.0 && r["budget"].get<double>() < 1.0))
    throw usage_error("--budget " + dump_json(r["budget"]) + " is outside [0, 1): it is the fraction of the cost to remove (0.7 keeps 30%)");
  if (!r["budget_kind"].is_null()) {
    const std::string k = r["budget_kind"];
    if (k != "flops" && k != "params" && k != "filters")
      throw usage_error("--budget-kind must be flops, params or filters, got '" + k + "'");
  }
  try {
    (void)prune::parse_group_mode(r["groups"].get<std::string>());
  } catch (const std::invalid_argument& e) {
    throw usage_error(std::string("--groups: ") + e.what());
  }
  if (r["finetune_epochs"].get<std::int64_t>() < 0) throw usage_error("--finetune-epochs must be >= 0");
  if (r["recalibrate_batches"].get<std::int64_t>() < 0) throw usage_error("--recalibrate-batches must be >= 0");
  if (!r["finetune_lr"].is_null() && !(r["finetune_lr"].get<double>() >= 0.0)) throw usage_error("--finetune-lr must be >= 0");
  return r;
}

void apply_pruner_override(json& config, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw usage_error("--set expects key=value (e.g. schedule.eta=0.3 or reconstruct=hard), got '" + assignment + "'");
  const std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  json value = json::parse(text, nullptr, false);
  if (value.is_discarded()) value = text;  // a bare name
  std::vector<std::string> path;
  for (std::size_t b = 0;;) {
    const auto dot = key.find('.', b);
    path.push_back(key.substr(b, dot == std::string::npos ? std::string::npos : dot - b));
    if (dot == std::string::npos) break;
    b = dot + 1;
  }
  json* node = &config;
  for (std::size_t i = 0; i + 1 < path.size(); ++i) {
    if (path[i].empty()) throw usage_error("--set: empty key component in '" + key + "'");
    json& next = (*node)[path[i]];
    if (next.is_string()) next = json{{"name", next}};  // a policy given by name gets parameters
    if (next.is_number() && path[i] == "budget") next = json{{"kind", "flops"}, {"target", next}};
    if (!next.is_object()) next = json::object();
    node = &next;
  }
  if (path.back().empty()) throw usage_error("--set: empty key component in '" + key + "'");
  (*node)[path.back()] = value;
}

json pruner_config(const json& opts, std::int64_t epochs, std::uint64_t seed) {
  json cfg = opts.at("config").is_null() ? json{{"preset", opts.at("preset")}} : opts.at("config");
  const bool budget_given = !opts.at("budget").is_null(), kind_given = !opts.at("budget_kind").is_null();
  if (budget_given || kind_given) {
    std::string kind = "flops";
    double target = 0.5;
    if (cfg.contains("budget")) {
      const json& b = cfg["budget"];
      if (b.is_number()) target = b.get<double>();
      if (b.is_object()) {
        kind = b.value("kind", kind);
        target = b.value("target", target);
      }
    }
    if (budget_given) target = opts.at("budget").get<double>();
    if (kind_given) kind = opts.at("budget_kind").get<std::string>();
    cfg["budget"] = {{"kind", kind}, {"target", target}};
  } else if (!cfg.contains("budget")) {
    cfg["budget"] = {{"kind", "flops"}, {"target", 0.5}};
  }
  for (const auto& s : opts.at("set")) apply_pruner_override(cfg, s.get<std::string>());
  if (!cfg.contains("total_epochs")) cfg["total_epochs"] = epochs;
  try {
    const json resolved = psap::resolve_config(cfg);
    if (resolved.at("criterion").value("name", std::string()) == "random") {
      const bool seeded = cfg.contains("criterion") && cfg["criterion"].is_object() && cfg["criterion"].contains("seed");
      if (!seeded) {
        json c = cfg.value("criterion", json::object());
        if (c.is_string()) c = json{{"name", c}};
        c["seed"] = seed;
        cfg["criterion"] = c;
      }
    }
    (void)psap::make_pruner(cfg);  // every parameter checked now, not at the first step
  } catch (const psap::error& e) {
    throw usage_error(std::string("pruner configuration: ") + e.what());
  } catch (const json::exception& e) {
    throw usage_error(std::string("pruner configuration ") + dump_json(cfg) + ": " + e.what());
  }
  return cfg;
}

void check_prune_plan(const json& resolved, prune::group_mode mode, bool has_streams, std::int64_t finetune_epochs) {
  const std::string rec = resolved.at("reconstruct").value("name", std::string());
  if (mode == prune::group_mode::internal_stream && has_streams && rec == "soft")
    throw usage_error(
        "--groups internal+stream needs a reconstruction that makes a pruned channel output exactly 0 (protective, "
        "hard or decay); this pruner uses 'soft', whose pruned channels still emit their batch-norm constant, which a "
        "residual stream would carry into every later block. Use --groups internal, or --set reconstruct=hard");
  if (finetune_epochs > 0 && rec == "soft")
    throw usage_error(
        "--finetune-epochs: 'soft' reconstruction lets pruned filters regrow while training goes on, so fine-tuning "
        "would undo the pruning; fine-tune a method with hard masks (l1, slimming, taylor, agp) or --set "
        "reconstruct=hard");
}

int run_prune(const json& given, const json& given_prune, const runtime_options& rt) {
  std::error_code ec;
  fs::create_directories(rt.output, ec);
  if (!fs::is_directory(rt.output)) throw io_error("cannot create output directory '" + rt.output.string() + "'");
  const fs::path last = rt.output / "last.safetensors";
  const fs::path final_path = rt.output / "final.safetensors";
  const fs::path compact_path = rt.output / "compact.safetensors";
  const fs::path metrics_path = rt.output / "metrics.jsonl";
  for (const char* f : {"last.safetensors", "final.safetensors", "compact.safetensors", "settings.json", "metrics.jsonl",
                        "result.json", "layers.json", "layers.csv", "pruning_log.jsonl"})
    remove_stale_temporaries(rt.output / f);

  // ------------------------------------------------------------ settings
  std::optional<loaded_checkpoint> resume_ck;
  fs::path data_dir = rt.data_dir;
  json settings, popts, pcfg;
  prune_progress progress;
  if (rt.resume) {
    if (!fs::exists(last))
      throw usage_error("--resume: no checkpoint '" + last.string() +
                        "' (a prune run writes it after its first epoch); start without --resume");
    resume_ck = read_checkpoint(last);
    const std::string src = quoted(last);
    if (!resume_ck->meta.extra.count(prune_meta_key))
      throw usage_error("--resume: " + src + " is not from a prune run (no \"prune\" metadata); continue it with psap-train train");
    json pm;
    try {
      pm = json::parse(resume_ck->meta.extra.at(prune_meta_key));
    } catch (const json::exception& e) {
      throw checkpoint_error(src + ": the \"prune\" metadata is not valid JSON (" + e.what() + ")");
    }
    progress = prune_progress::from_json(pm, src);
    popts = pm.at("options");
    pcfg = pm.at("pruner_config");
    settings = resume_ck->meta.settings;
    if (data_dir.empty() && resume_ck->meta.extra.count("data_dir")) data_dir = resume_ck->meta.extra.at("data_dir");
    const json fresh = resolve_prune_options(given_prune);
    for (const auto& [k, v] : given_prune.items())
      if (fresh.at(k) != popts.value(k, json()))
        throw usage_error("--resume: prune option " + k + " = " + dump_json(fresh.at(k)) + " differs from the checkpointed run's " +
                          dump_json(popts.value(k, json())) + "; drop the option, or start a new run in another --output");
  } else {
    if (fs::exists(last))
      throw usage_error(quoted(rt.output) +
                        " already holds a run (last.safetensors); pass --resume to continue it, or choose another --output");
    popts = resolve_prune_options(given_prune);
  }

  const int threads = apply_threads(resolve_threads(rt.threads, resume_ck ? resume_ck->meta.threads : 0));
  const dataset_pair data = load_data(data_options_from(rt.resume ? settings : given, data_dir));
  if (rt.resume) {
    const json fresh = resolve_settings(given, data.train.size());
    for (const auto& [k, v] : given.items())
      if (fresh.at(k) != settings.value(k, json()))
        throw usage_error("--resume: option " + k + " = " + dump_json(fresh.at(k)) + " differs from the checkpointed run's " +
                          dump_json(settings.value(k, json())) +
                          "; a resumed run continues with its recorded settings: drop the option, or start a new run in "
                          "another --output");
  } else {
    settings = resolve_settings(given, data.train.size());
  }
  const run_plan plan = plan_from_settings(settings, data.train);
  const std::int64_t prune_epochs = plan.loop.epochs;
  const std::int64_t ft_epochs = popts.at("finetune_epochs").get<std::int64_t>();
  const auto mode = prune::parse_group_mode(popts.at("groups").get<std::string>());
  if (!rt.resume) pcfg = pruner_config(popts, prune_epochs, plan.seed);
  progress_reporter bar(rt.log, rt.progress, prune_epochs + ft_epochs);

  // --------------------------------------------------------------- model
  json model_cfg;
  std::optional<loaded_checkpoint> init_ck;
  if (resume_ck) {
    model_cfg = resume_ck->meta.model_config;
  } else if (!rt.init_checkpoint.empty()) {
    init_ck = read_checkpoint(rt.init_checkpoint);
    model_cfg = init_ck->meta.model_config;
    check_model_matches(given, init_ck->meta, rt.init_checkpoint);
    progress.init_epochs = init_ck->meta.state.epoch;
    if (init_ck->meta.extra.count("epochs_consumed")) {
      try {
        progress.init_epochs = std::stoll(init_ck->meta.extra.at("epochs_consumed"));
      } catch (const std::exception&) {
        throw checkpoint_error(quoted(rt.init_checkpoint) + ": metadata 'epochs_consumed' is not an integer");
      }
    }
  } else {
    model_cfg = model_config_from(settings, data.train);
  }
  const std::unique_ptr<model> net = device::place_on(build_model(model_cfg, plan.seed), rt.device);
  sgd opt(*net, plan.sgd);
  if (resume_ck) {
    load_model_tensors(resume_ck->archive, *net, quoted(last));
    load_optimizer_tensors(resume_ck->archive, opt, quoted(last));
  } else if (init_ck) {
    load_model_tensors(init_ck->archive, *net, quoted(rt.init_checkpoint));
  }

  // ---------------------------------------------------------- the pruner
  prune::network_description desc;
  try {
    desc = prune::describe(*net, mode);
  } catch (const std::invalid_argument& e) {
    throw usage_error(e.what());
  }
  const bool has_streams = std::find(desc.kinds.begin(), desc.kinds.end(), prune::group_kind::stream) != desc.kinds.end();
  if (mode == prune::group_mode::internal_stream && !has_streams)
    bar.message("note: " + net->name() + " has no residual streams; --groups internal+stream prunes what internal does");
  psap::any_pruner<> pruner;
  try {
    pruner = psap::make_pruner(pcfg);
  } catch (const psap::error& e) {
    throw usage_error(std::string("pruner configuration: ") + e.what());
  }
  const json resolved = psap::describe(pruner);
  check_prune_plan(resolved, mode, has_streams, ft_epochs);
  const psap::budget_kind kind = pruner.options().target.kind;
  const std::string method = pcfg.contains("preset") ? pcfg["preset"].get<std::string>() : std::string("config");
  if (resolved.at("total_epochs").get<double>() != static_cast<double>(prune_epochs))
    bar.message("note: the pruner's total_epochs (" + dump_json(resolved.at("total_epochs")) + ") differs from the " +
                std::to_string(prune_epochs) + " pruning epochs; progress = epoch / total_epochs");
  {
    // Steps come at the end of pruning epochs 1..prune_epochs; one past
    // 1 − final_phase is frozen. If even the first is, nothing is pruned
    // (quick comparison runs do this on purpose: a note, not a refusal).
    const double total = resolved.at("total_epochs").get<double>(), fp = resolved.at("final_phase").get<double>();
    if (pruner.options().target.target > 0 && fp > 0 && prune_epochs > 0 && 1.0 / total > 1.0 - fp + 1e-12)
      bar.message("note: with " + std::to_string(prune_epochs) + " pruning epoch(s) and final_phase " +
                  dump_json(resolved.at("final_phase")) + " (" + method +
                  "'s), every pruning step falls in the frozen final phase and nothing will be pruned; give more "
                  "--epochs (at least " + std::to_string(static_cast<int>(std::ceil(1.0 / (1.0 - fp) - 1e-9))) +
                  ") or --set final_phase=0");
  }
  if (ft_epochs == 0 && (method == "l1" || method == "slimming" || method == "taylor"))
    bar.message("note: " + method + " is meant to be fine-tuned after pruning (--finetune-epochs)");
  pruner.bind(desc.net);
  if (resume_ck) {
    if (!resume_ck->archive.contains(state_tensor))
      throw checkpoint_error(quoted(last) + ": no '" + std::string(state_tensor) + "' tensor; the checkpoint is incomplete");
    const st_tensor& t = resume_ck->archive.at(state_tensor);
    if (t.dtype != st_dtype::U8) throw checkpoint_error(quoted(last) + ": '" + std::string(state_tensor) + "' must be U8");
    pruner.load_state(desc.net, std::span<const std::uint8_t>(t.bytes.data(), t.bytes.size()));
  }

  // --------------------------------------------------------- checkpoints
  checkpoint_meta meta;
  meta.seed = plan.seed;
  meta.model_name = net->name();
  meta.model_config = model_cfg;
  meta.settings = settings;
  meta.schedule = plan.loop.schedule;
  meta.sgd = plan.sgd;
  meta.threads = threads;
  if (resume_ck) {
    meta.extra = resume_ck->meta.extra;
    if (resume_ck->meta.threads != threads)
      bar.message("warning: the checkpoint was written with " + std::to_string(resume_ck->meta.threads) +
                  " threads, this run uses " + std::to_string(threads) +
                  "; the result will not be bitwise identical to an uninterrupted run (pass --threads " +
                  std::to_string(resume_ck->meta.threads) + ")");
  }
  if (!data_dir.empty()) meta.extra["data_dir"] = data_dir.string();
  if (!rt.init_checkpoint.empty()) meta.extra["init_checkpoint"] = rt.init_checkpoint.string();
  const auto t_process = clock_type::now();
  const double wall_before = progress.wall_seconds;
  auto wall_now = [&] { return wall_before + seconds_since(t_process); };
  auto save = [&](const fs::path& path, const loop_state& st, const json& metrics) {
    meta.state = st;
    meta.has_momentum = opt.has_momentum();
    meta.metrics = metrics;
    progress.wall_seconds = wall_now();
    meta.extra[prune_meta_key] = dump_json(progress.to_json(popts, pcfg));
    const std::vector<std::uint8_t> blob = pruner.state();
    save_checkpoint(path, *net, &opt, meta, [&](tensor_archive& a) {
      a.add(state_tensor, st_dtype::U8, {static_cast<std::uint64_t>(blob.size())}, blob);
    });
  };
  {
    const std::string text = dump_json({{"settings", settings},
                                        {"prune", popts},
                                        {"pruner_config", pcfg},
                                        {"pruner", resolved},
                                        {"model_config", model_cfg},
                                        {"threads", threads}},
                                       2);
    write_text(rt.output / "settings.json", text);
  }
  if (resume_ck) {
    const std::int64_t done = progress.phase == "finetune" ? progress.prune_end.epoch + progress.finetune.epoch
                                                            : resume_ck->meta.state.epoch;
    truncate_metrics(metrics_path, done);
    bar.message("resuming " + rt.output.string() + " (" + progress.phase + " phase) after epoch " + std::to_string(done));
  } else {
    truncate_metrics(metrics_path, -1);
  }
  bar.message("psap-train prune: " + net->name() + " (" + std::to_string(parameter_count(*net)) + " parameters, " +
              std::to_string(desc.net.groups().size()) + " groups, " + prune::to_string(mode) + ") on " + data.train.name +
              " (" + std::to_string(data.train.size()) + " train / " + std::to_string(data.test.size()) + " test images), " +
              method + " to -" + std::to_string(static_cast<int>(std::lround(100 * pruner.options().target.target))) + "% " +
              psap::to_string(kind) + ", " + std::to_string(prune_epochs) + " epochs + " + std::to_string(ft_epochs) +
              " fine-tune, " + std::to_string(threads) + " threads, output " + rt.output.string());

  json last_metrics = resume_ck ? resume_ck->meta.metrics : json::object();
  auto evaluate_test = [&] { return evaluate_dataset(*net, data.test, rt.eval_batch_size).accuracy; };

  // ------------------------------------------------------ pruning epochs
  loop_state prune_end = progress.phase == "finetune" ? progress.prune_end : loop_state{};
  if (progress.phase == "prune") {
    std::optional<psap::step_log> epoch_step;
    training_hooks hooks;
    hooks.begin = [&](const loop_state& start) {
      if (start.epoch == 0 && popts.at("init_step").get<bool>()) bar.message(step_line(pruner.step(desc.net, 0), kind));
    };
    hooks.after_backward = [&](const step_info&) { pruner.observe(desc.net); };
    hooks.after_step = [&](const step_info&) { pruner.after_update(desc.net); };
    hooks.epoch_end = [&](std::int64_t e) {
      if (e + 1 == prune_epochs) progress.before_last_step = evaluate_test();
      epoch_step = pruner.step(desc.net, static_cast<double>(e + 1));
    };
    hooks.epoch_begin = [&](std::int64_t e, std::size_t n) { bar.epoch_begin(e, n); };
    hooks.on_batch = [&](const step_info& s) { bar.batch(s); };
    hooks.on_epoch = [&](const epoch_report& r) {
      bar.epoch_done(r);
      last_metrics = metrics_json(r);
      last_metrics["phase"] = "prune";
      if (epoch_step) {
        last_metrics.update(step_fields(*epoch_step));
        bar.message(step_line(*epoch_step, kind));
      }
      if (r.epoch == prune_epochs && r.test) progress.after_last_step = r.test->accuracy;
      append_line(metrics_path, dump_json(last_metrics));
    };
    hooks.on_checkpoint = [&](const loop_state& st, const epoch_report&) { save(last, st, last_metrics); };
    const loop_state start = resume_ck ? resume_ck->meta.state : loop_state{};
    prune_end = train_loop(*net, opt, data.train, &data.test, plan.loop, start, hooks);
    if (!progress.after_last_step) progress.after_last_step = evaluate_test();  // no epoch ran (nothing to prune)

    // End of pruning: decay zeroes what is left (finalize), then the BN
    // statistics are recalibrated with the masks fixed.
    (void)pruner.finalize(desc.net);
    const auto nrec = popts.at("recalibrate_batches").get<std::int64_t>();
    if (nrec > 0) {
      batch_loader rl(data.train, plan.loop.train_loader);
      const int used = recalibrate_bn(*net, loader_source(rl, static_cast<std::uint64_t>(prune_end.epoch)), static_cast<int>(nrec));
      progress.after_recalibration = evaluate_test();
      bar.message("BN recalibrated on " + std::to_string(used) + " batches: test accuracy " +
                  std::to_string(*progress.after_recalibration));
    }
    progress.phase = "finetune";
    progress.prune_end = prune_end;
    progress.finetune = {};
  }

  // -------------------------------------------------------- fine-tuning
  loop_config ft = plan.loop;
  ft.epochs = ft_epochs;
  ft.max_iterations = 0;
  ft.train_loader.seed = plan.seed ^ finetune_seed_salt;
  {
    const double base = popts.at("finetune_lr").is_null() ? settings.at("lr").get<double>() / 10.0 : popts.at("finetune_lr").get<double>();
    const std::size_t bs = ft.train_loader.batch_size;
    const auto per_epoch = static_cast<std::int64_t>((data.train.size() + bs - 1) / bs);
    lr_schedule s;
    s.kind = "cosine";
    s.base_lr = base;
    s.total_iters = std::max<std::int64_t>(1, ft_epochs * per_epoch);
    ft.schedule = s;
  }
  if (ft_epochs > 0) {
    meta.schedule = ft.schedule;
    training_hooks hooks;
    hooks.after_backward = [&](const step_info&) { pruner.observe(desc.net); };
    hooks.after_step = [&](const step_info&) { pruner.after_update(desc.net); };
    hooks.epoch_begin = [&](std::int64_t e, std::size_t n) { bar.epoch_begin(prune_end.epoch + e, n); };
    hooks.on_batch = [&](const step_info& s) { bar.batch(s); };
    hooks.on_epoch = [&](const epoch_report& r) {
      epoch_report g = r;
      g.epoch += prune_end.epoch;
      g.iteration += prune_end.iteration;
      bar.epoch_done(g);
      last_metrics = metrics_json(g);
      last_metrics["phase"] = "finetune";
      append_line(metrics_path, dump_json(last_metrics));
    };
    hooks.on_checkpoint = [&](const loop_state& st, const epoch_report&) {
      progress.finetune = st;
      save(last, {prune_end.epoch + st.epoch, prune_end.iteration + st.iteration}, last_metrics);
    };
    const loop_state done = train_loop(*net, opt, data.train, &data.test, ft, progress.finetune, hooks);
    progress.finetune = done;
  }
  // The keep-lists (decay zeroes what is left; the masks do not change).
  const psap::pruning_result result = pruner.finalize(desc.net);
  const double final_accuracy = ft_epochs > 0 ? evaluate_test()
                                : progress.after_recalibration ? *progress.after_recalibration
                                                               : *progress.after_last_step;
  const loop_state end{prune_end.epoch + progress.finetune.epoch, prune_end.iteration + progress.finetune.iteration};
  const std::int64_t epochs_consumed = progress.init_epochs + end.epoch;
  meta.extra["epochs_consumed"] = std::to_string(epochs_consumed);
  save(final_path, end, last_metrics);

  // ---------------------------------------------------------- compaction
  prune::compaction c;
  try {
    c = prune::compact(*net, desc, result);
  } catch (const prune::compaction_error& e) {
    throw training_error(std::string("the pruned network cannot be compacted exactly: ") + e.what());
  }
  int check_n = 0;
  const std::vector<float> check_x = check_batch(data.test, compact_check_images, check_n);
  // On the CPU layers even for a --device run: the check is about compaction,
  // not about two implementations' rounding.
  const prune::logit_comparison cmp = prune::compare_logits(device::host_of(*net), *c.net, check_x.data(), check_n);
  const double max_diff = cmp.max_abs_diff;
  // Compaction is exact up to float rounding (a few 1e-5 of the logits);
  // anything larger is a network the compactor misread: refuse to write it.
  if (!(max_diff <= 1e-3 * std::max(1.0, cmp.max_abs_logit)))
    throw training_error("the compact network differs from the pruned one by " + std::to_string(max_diff) +
                         " in the logits (largest logit " + std::to_string(cmp.max_abs_logit) + ") on " +
                         std::to_string(check_n) + " test images; " + compact_path.string() +
                         " was not written (" + final_path.string() + " holds the pruned network)");
  const eval_result compact_eval = evaluate_dataset(*c.net, data.test, rt.eval_batch_size);
  {
    checkpoint_meta cm = meta;
    cm.model_name = c.net->name();
    cm.model_config = c.config;
    cm.extra.erase(prune_meta_key);
    cm.extra["compacted_from"] = final_path.filename().string();
    save_checkpoint(compact_path, *c.net, nullptr, cm);
  }

  // ------------------------------------------------------------- reports
  write_text(rt.output / "layers.json", dump_json(result.to_json(), 2) + "\n");
  write_text(rt.output / "layers.csv", result.to_csv());
  {
    std::string lines;
    for (const auto& s : pruner.log()) lines += dump_json(json(s)) + "\n";
    write_text(rt.output / "pruning_log.jsonl", lines);
  }
  auto filters_of = [](model& m) {
    std::int64_t f = 0;
    for (const auto& cr : m.conv_layers()) f += cr.c_out();
    return f;
  };
  const psap::cost model_unpruned{total_macs(*net), parameter_count(*net), filters_of(*net)};
  const psap::cost model_pruned{total_macs(*c.net), parameter_count(*c.net), filters_of(*c.net)};
  json kept = json::object(), sizes = json::object();
  for (const auto& g : result.groups) {
    kept[g.group] = g.kept.size();
    sizes[g.group] = g.size;
  }
  json churn = json::array(), restores = json::array(), steps = json::array();
  for (const auto& s : pruner.log()) {
    churn.push_back(s.churn());
    restores.push_back(restores_of(s));
    steps.push_back({{"step", s.step}, {"epoch", s.epoch}, {"budget", s.budget_now}, {"reduction", s.reduction},
                     {"churn", s.churn()}, {"restored", restores_of(s)}, {"frozen", s.frozen}});
  }
  const double target = pruner.options().target.target;
  const double reduction = result.reduction(kind);
  const double compact_reduction =
      1.0 - static_cast<double>(model_pruned.of(kind)) / static_cast<double>(model_unpruned.of(kind));
  const json report = {
      {"schema", "psap-train/prune-result/1"},
      {"method", method},
      {"preset", pcfg.contains("preset") ? pcfg["preset"] : json(nullptr)},
      {"pruner_config", resolved},
      {"pruner_input", pcfg},
      {"groups_mode", prune::to_string(mode)},
      {"model", net->name()},
      {"model_config", model_cfg},
      {"compact_model_config", c.config},
      {"data", settings.at("data")},
      {"train_images", data.train.size()},
      {"test_images", data.test.size()},
      {"seed", plan.seed},
      {"settings", settings},
      {"epochs", prune_epochs},
      {"finetune_epochs", ft_epochs},
      {"init_checkpoint", meta.extra.count("init_checkpoint") ? json(meta.extra.at("init_checkpoint")) : json(nullptr)},
      {"init_checkpoint_epochs", progress.init_epochs},
      {"epochs_consumed", epochs_consumed},
      {"iterations", end.iteration},
      {"accuracy",
       {{"before_last_step", number_or_null(progress.before_last_step)},
        {"after_last_step", number_or_null(progress.after_last_step)},
        {"after_recalibration", number_or_null(progress.after_recalibration)},
        {"final", final_accuracy},
        {"compact", compact_eval.accuracy}}},
      {"recalibrate_batches", popts.at("recalibrate_batches")},
      {"budget", {{"kind", psap::to_string(kind)}, {"target", target}, {"met", reduction >= target}, {"met_by_compact", compact_reduction >= target}}},
      {"costs",
       {{"unpruned",
         {{"macs", result.before.macs}, {"params", result.before.params}, {"filters", result.before.filters},
          {"macs_model", model_unpruned.macs}, {"params_model", model_unpruned.params}, {"filters_model", model_unpruned.filters}}},
        {"pruned",
         {{"macs", result.after.macs}, {"params", result.after.params}, {"filters", result.after.filters},
          {"macs_compact", model_pruned.macs}, {"params_compact", model_pruned.params}, {"filters_compact", model_pruned.filters}}},
        {"reduction",
         {{"macs", result.reduction(psap::budget_kind::flops)}, {"params", result.reduction(psap::budget_kind::params)},
          {"filters", result.reduction(psap::budget_kind::filters)}}}}},
      {"kept", kept},
      {"group_sizes", sizes},
      {"steps", steps},
      {"churn_per_step", churn},
      {"restores_per_step", restores},
      {"compact_check",
       {{"images", check_n},
        {"max_abs_diff", max_diff},
        {"max_abs_logit", cmp.max_abs_logit},
        {"removed_zero", c.removed_zero},
        {"removed_constant", c.removed_constant},
        {"bias_maps", c.bias_maps}}},
      {"wall_seconds", wall_now()},
      {"threads", threads},
      {"files",
       {{"final", final_path.filename().string()}, {"compact", compact_path.filename().string()}, {"layers_json", "layers.json"},
        {"layers_csv", "layers.csv"}, {"pruning_log", "pruning_log.jsonl"}, {"metrics", "metrics.jsonl"}}}};
  write_text(rt.output / "result.json", dump_json(report, 2) + "\n");

  bar.message("\n" + result.table());
  std::ostringstream summary;
  summary.precision(4);
  summary << "accuracy: before last step " << dump_json(report["accuracy"]["before_last_step"]) << ", after "
          << dump_json(report["accuracy"]["after_last_step"]) << ", after recalibration "
          << dump_json(report["accuracy"]["after_recalibration"]) << ", final " << final_accuracy << "; compact model "
          << compact_eval.accuracy << " (max |logit diff| " << max_diff << " on " << check_n << " images)";
  bar.message(summary.str());
  json line = {{"output", rt.output.string()},
               {"method", method},
               {"epochs", end.epoch},
               {"iterations", end.iteration},
               {"final_acc", final_accuracy},
               {"compact_acc", compact_eval.accuracy},
               {"reduction", reduction},
               {"budget_met", reduction >= target},
               {"compact_max_abs_diff", max_diff}};
  std::cout << dump_json(line) << std::endl;
  return 0;
}

}  // namespace trainer
