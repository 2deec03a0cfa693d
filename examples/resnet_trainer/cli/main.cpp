// psap-train: command-line front end of the reference trainer. Parsing only;
// the work is in commands.cpp / train_loop.cpp.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <functional>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/prune_command.hpp"
#include "data/registry.hpp"
#include "device/device_model.hpp"
#include "optim/recipe.hpp"

namespace {

using json = nlohmann::json;

// --device: rejected at parse time with the list of valid names.
const CLI::Validator device_name(
    [](std::string& d) {
      try {
        trainer::device::check_device_name(d);
      } catch (const std::invalid_argument& e) {
        return std::string(e.what());
      }
      return std::string();
    },
    "DEVICE");

// Real-valued options: NaN passes CLI11's Range checks (every comparison with
// it is false) and Inf passes some, so reject both when parsing.
const CLI::Validator finite_number(
    [](std::string& text) {
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (end != text.c_str() && *end == '\0' && !std::isfinite(v))
        return "value " + text + " is not a finite number";
      return std::string();
    },
    "");

// Options that become run settings are recorded only when given, so a
// resumed run can tell "not given" from "given with the default value".
struct settings_collector {
  std::vector<std::function<void(json&)>> collect;

  template <class T>
  CLI::Option* add(CLI::App* app, const std::string& flags, const std::string& key, T& target,
                   const std::string& help) {
    CLI::Option* o = app->add_option(flags, target, help);
    collect.push_back([o, key, &target](json& j) {
      if (o->count() > 0) j[key] = target;
    });
    return o;
  }
  CLI::Option* add_flag(CLI::App* app, const std::string& flags, const std::string& key, bool& target,
                        const std::string& help) {
    CLI::Option* o = app->add_flag(flags, target, help);
    collect.push_back([o, key, &target](json& j) {
      if (o->count() > 0) j[key] = target;
    });
    return o;
  }
  json given() const {
    json j = json::object();
    for (const auto& c : collect) c(j);
    return j;
  }
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// The options of a run (train and prune share them): settings recorded only
// when given, plus the runtime options.
struct run_cli {
  settings_collector sc;
  std::string model = "resnet20", shortcut = "A", recipe, schedule;
  std::vector<std::string> data_args;
  std::uint64_t train_subset = 0, test_subset = 0, batch_size = 0, seed = 0;
  std::int64_t epochs = 0, step_size = 0, warmup = 0;
  double lr = 0, momentum = 0, weight_decay = 0, gamma = 0, min_lr = 0, warmup_start = 0;
  bool nesterov = true, flip = true, standard_stats = false;
  int pad = 0;
  std::vector<std::int64_t> milestones;
  trainer::runtime_options rt;
  std::string progress = "auto";
  std::string init_checkpoint, output;
  CLI::Option* data_opt = nullptr;

  json given() const {
    json g = sc.given();
    if (data_opt->count() > 0) g["data"] = data_args.at(0);
    return g;
  }
  trainer::runtime_options runtime() {
    trainer::runtime_options r = rt;
    if (data_opt->count() > 0 && data_args.size() > 1) r.data_dir = data_args[1];
    r.output = output;
    r.init_checkpoint = init_checkpoint;
    r.progress = trainer::parse_progress_mode(progress);
    return r;
  }
};

void add_run_options(CLI::App* app, run_cli& v) {
  settings_collector& sc = v.sc;
  sc.add(app, "--model,-m", "model", v.model, "resnet20|resnet32|resnet44|resnet56|resnet110|vgg16")->capture_default_str();
  sc.add(app, "--shortcut", "shortcut", v.shortcut, "ResNet shortcut: A (zero-padding identity) or B (1x1 conv)")
      ->check(CLI::IsMember({"A", "B"}))
      ->capture_default_str();
  v.data_opt = app->add_option("--data,-d", v.data_args,
                               "data set and optional directory: NAME [DIR]; NAME one of " +
                                   [] {
                                     std::vector<std::string> n;
                                     for (const auto& d : trainer::known_datasets()) n.push_back(d.name);
                                     return join(n);
                                   }() +
                                   " (default fashion-mnist in /usr/share/datasets/fashion-mnist)")
                   ->expected(1, 2);
  sc.add(app, "--train-subset", "train_subset", v.train_subset, "train on a fixed, seeded subset of N images (0: all)");
  sc.add(app, "--test-subset", "test_subset", v.test_subset, "evaluate on a fixed, seeded subset of N images (0: all)");
  sc.add_flag(app, "--standard-stats", "standard_stats", v.standard_stats,
              "normalise with the published mean/std instead of the training set's");
  sc.add(app, "--recipe", "recipe", v.recipe,
         "training recipe: " + join(trainer::recipe_names()) + " (default: fashion, sfp-cifar for cifar10)")
      ->check(CLI::IsMember(trainer::recipe_names()));
  sc.add(app, "--epochs,-e", "epochs", v.epochs, "epochs (default: the recipe's; milestones scale with it)")
      ->check(CLI::PositiveNumber);
  sc.add(app, "--batch-size,-b", "batch_size", v.batch_size, "batch size (default: the recipe's, 128)")
      ->check(CLI::PositiveNumber);
  sc.add(app, "--lr", "lr", v.lr, "base learning rate")->check(finite_number)->check(CLI::NonNegativeNumber);
  sc.add(app, "--momentum", "momentum", v.momentum, "SGD momentum")
      ->check(finite_number)
      ->check(CLI::NonNegativeNumber);
  sc.add_flag(app, "--nesterov,!--no-nesterov", "nesterov", v.nesterov, "Nesterov momentum");
  sc.add(app, "--weight-decay,--wd", "weight_decay", v.weight_decay, "L2 weight decay")
      ->check(finite_number)
      ->check(CLI::NonNegativeNumber);
  sc.add(app, "--schedule", "schedule", v.schedule, "LR schedule: constant, step, multistep, cosine")
      ->check(CLI::IsMember({"constant", "step", "multistep", "cosine"}));
  sc.add(app, "--milestones", "milestones", v.milestones, "multistep milestones in epochs, e.g. 60,120,160")->delimiter(',');
  sc.add(app, "--gamma", "gamma", v.gamma, "LR factor at each step/milestone")
      ->check(finite_number)
      ->check(CLI::NonNegativeNumber);
  sc.add(app, "--step-size", "step_size", v.step_size, "step schedule period in epochs")->check(CLI::PositiveNumber);
  sc.add(app, "--warmup-epochs", "warmup", v.warmup, "linear warm-up epochs")->check(CLI::NonNegativeNumber);
  sc.add(app, "--warmup-start", "warmup_start", v.warmup_start, "warm-up starts at this fraction of the LR")
      ->check(finite_number)
      ->check(CLI::Range(0.0, 1.0));
  sc.add(app, "--min-lr", "min_lr", v.min_lr, "cosine schedule floor")
      ->check(finite_number)
      ->check(CLI::NonNegativeNumber);
  sc.add(app, "--pad", "pad", v.pad, "random-crop zero padding (default 4 for cifar10, 2 otherwise; 0: no crop)")
      ->check(CLI::NonNegativeNumber);
  sc.add_flag(app, "--flip,!--no-flip", "flip", v.flip, "random horizontal flips (default on, off for mnist)");
  sc.add(app, "--seed,-s", "seed", v.seed, "seed of initialisation, data order, augmentation and subsets");
  app->add_option("--threads,-j", v.rt.threads, "OpenMP threads (0: all cores; default: all cores, or on --resume the checkpoint's count)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--device", v.rt.device,
                  "where forward and backward run: cpu, cuda, cuda:N, or emulated (the GPU code path on the CPU)")
      ->check(device_name)
      ->capture_default_str();
  app->add_option("--output,-o", v.output, "output directory (checkpoints, metrics.jsonl)")->capture_default_str();
  app->add_option("--checkpoint", v.init_checkpoint, "start from the weights of this checkpoint (fresh optimizer and schedule)")
      ->check(CLI::ExistingFile);
  app->add_flag("--resume", v.rt.resume, "continue the run in --output from last.safetensors");
  app->add_option("--eval-batch-size", v.rt.eval_batch_size, "evaluation batch size")->check(CLI::PositiveNumber);
  app->add_option("--progress", v.progress, "progress display: auto (bar on a terminal), bar, lines, none")
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}))
      ->capture_default_str();
  app->get_option("--checkpoint")->excludes(app->get_option("--resume"));
}

// Prune options are recorded only when given (as run settings are).
using prune_collector = settings_collector;

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw trainer::usage_error("--config: cannot read '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return json::parse(text.str());
  } catch (const json::exception& e) {
    throw trainer::usage_error("--config: '" + path + "' is not valid JSON (" + e.what() + ")");
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"psap-train: the psap reference trainer (CIFAR ResNets and VGG-16 on Fashion-MNIST, MNIST, CIFAR-10)"};
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  psap-train train --model resnet20 --epochs 15 --output runs/r20\n"
      "  psap-train train --output runs/r20 --resume\n"
      "  psap-train train --data cifar10 ~/data/cifar-10-batches-bin --model resnet56 --output runs/r56\n"
      "  psap-train prune --preset psap --budget 0.7 --epochs 15 --output runs/psap70\n"
      "  psap-train prune --preset l1 --checkpoint runs/r20/final.safetensors --epochs 1 --finetune-epochs 5\n"
      "  psap-train eval --checkpoint runs/r20/final.safetensors\n"
      "  psap-train inspect runs/r20/final.safetensors");

  // ------------------------------------------------------------------ train
  CLI::App* train = app.add_subcommand("train", "Train a network; checkpoints and metrics go to --output");
  run_cli train_cli;
  train_cli.output = "runs/train";
  add_run_options(train, train_cli);

  // ------------------------------------------------------------------ prune
  CLI::App* prune = app.add_subcommand(
      "prune",
      "Train (or fine-tune) while a psap pruner prunes; writes final.safetensors (masked), compact.safetensors, "
      "result.json, layers.json/csv, pruning_log.jsonl and metrics.jsonl to --output (docs/pruning-run.md)");
  run_cli prune_cli;
  prune_cli.output = "runs/prune";
  add_run_options(prune, prune_cli);
  prune_collector pc;
  std::string preset = "psap", config_file, budget_kind, groups = "internal";
  std::vector<std::string> sets;
  double budget = 0.5, finetune_lr = 0.0;
  std::int64_t finetune_epochs = 0, recalibrate_batches = 16;
  bool no_init_step = false;
  const std::vector<std::string> preset_names = trainer::pruner_preset_names();
  CLI::Option* preset_opt = pc.add(prune, "--preset", "preset", preset, "pruner preset: " + join(preset_names) + " (default psap)")
                                ->check(CLI::IsMember(preset_names));
  CLI::Option* config_opt = prune
                                ->add_option("--config", config_file,
                                             "pruner configuration file (JSON, as psap::make_pruner takes; see docs/integration.md)")
                                ->check(CLI::ExistingFile);
  preset_opt->excludes(config_opt);
  pc.add(prune, "--set", "set", sets,
         "override a pruner parameter, KEY=VALUE with a dotted key, e.g. schedule.eta=0.3, protect.kappa=4, "
         "reconstruct=hard, final_phase=0 (repeatable)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  pc.add(prune, "--budget", "budget", budget, "fraction of the cost to remove, in [0, 1) (default 0.5)")
      ->check(finite_number)
      ->check(CLI::Range(0.0, 0.999999));
  pc.add(prune, "--budget-kind", "budget_kind", budget_kind, "what the budget counts: flops (MACs), params or filters")
      ->check(CLI::IsMember({"flops", "params", "filters"}));
  pc.add(prune, "--groups", "groups", groups,
         "prunable channels: internal (each block's inner channels; VGG: every conv) or internal+stream (also the "
         "residual streams; needs protective, hard or decay reconstruction)")
      ->check(CLI::IsMember({"internal", "internal+stream"}));
  pc.add(prune, "--finetune-epochs", "finetune_epochs", finetune_epochs,
         "epochs of fine-tuning after the pruning epochs, masks held (l1, slimming, taylor)")
      ->check(CLI::NonNegativeNumber);
  pc.add(prune, "--finetune-lr", "finetune_lr", finetune_lr, "fine-tune learning rate, cosine to 0 (default: --lr / 10)")
      ->check(finite_number)
      ->check(CLI::NonNegativeNumber);
  pc.add(prune, "--recalibrate-batches", "recalibrate_batches", recalibrate_batches,
         "batches for BN recalibration after the pruning epochs (0: none)")
      ->check(CLI::NonNegativeNumber);
  CLI::Option* no_init = prune->add_flag("--no-init-step", no_init_step,
                                         "no pruning step before the first epoch (by default there is one, step(net, 0))");
  pc.collect.push_back([no_init, &no_init_step](json& j) {
    if (no_init->count() > 0) j["init_step"] = !no_init_step;
  });

  // ------------------------------------------------------------------- eval
  CLI::App* eval = app.add_subcommand("eval", "Evaluate a checkpoint; prints one JSON line");
  trainer::eval_options eo;
  std::string eval_ckpt;
  std::vector<std::string> eval_data;
  eval->add_option("--checkpoint,-c,checkpoint", eval_ckpt, "checkpoint file")->required()->check(CLI::ExistingFile);
  eval->add_option("--data,-d", eval_data, "NAME [DIR] (default: the checkpoint's data set)")->expected(1, 2);
  eval->add_option("--test-subset", eo.test_subset, "evaluate a fixed, seeded subset of N images (0: all)");
  eval->add_option("--split", eo.split, "test or train")
      ->check(CLI::IsMember({"test", "train"}))
      ->capture_default_str();
  eval->add_option("--batch-size,-b", eo.batch_size, "batch size")->check(CLI::PositiveNumber)->capture_default_str();
  eval->add_option("--threads,-j", eo.threads, "OpenMP threads (0: all cores)")->check(CLI::NonNegativeNumber);
  eval->add_option("--device", eo.device, "cpu, cuda, cuda:N or emulated")->check(device_name)->capture_default_str();
  eval->add_option("--dump-logits", eo.dump,
                   "also write the evaluated images (normalised inputs and raw pixels), labels and eval-mode logits "
                   "to this safetensors file");

  // ---------------------------------------------------------------- inspect
  CLI::App* inspect = app.add_subcommand(
      "inspect", "Print a safetensors file's metadata and tensors (dtype, shape, CRC32, sum) as JSON");
  std::string inspect_file;
  bool inspect_values = false;
  inspect->add_option("file", inspect_file, "safetensors file")->required()->check(CLI::ExistingFile);
  inspect->add_flag("--values", inspect_values, "include every value");

  CLI11_PARSE(app, argc, argv);

  try {
    if (train->parsed()) return trainer::run_train(train_cli.given(), train_cli.runtime());
    if (prune->parsed()) {
      json given_prune = pc.given();
      if (!config_file.empty()) given_prune["config"] = read_json_file(config_file);
      return trainer::run_prune(prune_cli.given(), given_prune, prune_cli.runtime());
    }
    if (eval->parsed()) {
      eo.checkpoint = eval_ckpt;
      if (!eval_data.empty()) {
        eo.data = eval_data[0];
        if (eval_data.size() > 1) eo.data_dir = eval_data[1];
      }
      return trainer::run_eval(eo);
    }
    if (inspect->parsed()) return trainer::run_inspect(inspect_file, inspect_values);
  } catch (const trainer::usage_error& e) {
    std::fprintf(stderr, "\npsap-train: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\npsap-train: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
