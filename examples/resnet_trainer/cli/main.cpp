// psap-train: command-line front end of the reference trainer. Parsing only;
// the work is in commands.cpp / train_loop.cpp.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "data/registry.hpp"
#include "optim/recipe.hpp"

namespace {

using json = nlohmann::json;

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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"psap-train: the psap reference trainer (CIFAR ResNets and VGG-16 on Fashion-MNIST, MNIST, CIFAR-10)"};
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  psap-train train --model resnet20 --epochs 15 --output runs/r20\n"
      "  psap-train train --output runs/r20 --resume\n"
      "  psap-train train --data cifar10 ~/data/cifar-10-batches-bin --model resnet56 --output runs/r56\n"
      "  psap-train eval --checkpoint runs/r20/final.safetensors\n"
      "  psap-train inspect runs/r20/final.safetensors");

  // ------------------------------------------------------------------ train
  CLI::App* train = app.add_subcommand("train", "Train a network; checkpoints and metrics go to --output");
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
  std::string init_checkpoint, output = rt.output.string();

  sc.add(train, "--model,-m", "model", model, "resnet20|resnet32|resnet44|resnet56|resnet110|vgg16")
      ->capture_default_str();
  sc.add(train, "--shortcut", "shortcut", shortcut, "ResNet shortcut: A (zero-padding identity) or B (1x1 conv)")
      ->check(CLI::IsMember({"A", "B"}))
      ->capture_default_str();
  CLI::Option* data_opt = train
                              ->add_option(
                                  "--data,-d", data_args,
                                  "data set and optional directory: NAME [DIR]; NAME one of " +
                                      [] {
                                        std::vector<std::string> n;
                                        for (const auto& d : trainer::known_datasets()) n.push_back(d.name);
                                        return join(n);
                                      }() +
                                      " (default fashion-mnist in /usr/share/datasets/fashion-mnist)")
                              ->expected(1, 2);
  sc.add(train, "--train-subset", "train_subset", train_subset, "train on a fixed, seeded subset of N images (0: all)");
  sc.add(train, "--test-subset", "test_subset", test_subset, "evaluate on a fixed, seeded subset of N images (0: all)");
  sc.add_flag(train, "--standard-stats", "standard_stats", standard_stats,
              "normalise with the published mean/std instead of the training set's");
  sc.add(train, "--recipe", "recipe", recipe,
         "training recipe: " + join(trainer::recipe_names()) + " (default: fashion, sfp-cifar for cifar10)")
      ->check(CLI::IsMember(trainer::recipe_names()));
  sc.add(train, "--epochs,-e", "epochs", epochs, "epochs (default: the recipe's; milestones scale with it)")
      ->check(CLI::PositiveNumber);
  sc.add(train, "--batch-size,-b", "batch_size", batch_size, "batch size (default: the recipe's, 128)")
      ->check(CLI::PositiveNumber);
  sc.add(train, "--lr", "lr", lr, "base learning rate")->check(CLI::NonNegativeNumber);
  sc.add(train, "--momentum", "momentum", momentum, "SGD momentum")->check(CLI::NonNegativeNumber);
  sc.add_flag(train, "--nesterov,!--no-nesterov", "nesterov", nesterov, "Nesterov momentum");
  sc.add(train, "--weight-decay,--wd", "weight_decay", weight_decay, "L2 weight decay")->check(CLI::NonNegativeNumber);
  sc.add(train, "--schedule", "schedule", schedule, "LR schedule: constant, step, multistep, cosine")
      ->check(CLI::IsMember({"constant", "step", "multistep", "cosine"}));
  sc.add(train, "--milestones", "milestones", milestones, "multistep milestones in epochs, e.g. 60,120,160")
      ->delimiter(',');
  sc.add(train, "--gamma", "gamma", gamma, "LR factor at each step/milestone")->check(CLI::NonNegativeNumber);
  sc.add(train, "--step-size", "step_size", step_size, "step schedule period in epochs")->check(CLI::PositiveNumber);
  sc.add(train, "--warmup-epochs", "warmup", warmup, "linear warm-up epochs")->check(CLI::NonNegativeNumber);
  sc.add(train, "--warmup-start", "warmup_start", warmup_start, "warm-up starts at this fraction of the LR")
      ->check(CLI::Range(0.0, 1.0));
  sc.add(train, "--min-lr", "min_lr", min_lr, "cosine schedule floor")->check(CLI::NonNegativeNumber);
  sc.add(train, "--pad", "pad", pad, "random-crop zero padding (default 4 for cifar10, 2 otherwise; 0: no crop)")
      ->check(CLI::NonNegativeNumber);
  sc.add_flag(train, "--flip,!--no-flip", "flip", flip, "random horizontal flips (default on, off for mnist)");
  sc.add(train, "--seed,-s", "seed", seed, "seed of initialisation, data order, augmentation and subsets");
  train->add_option("--threads,-j", rt.threads, "OpenMP threads (0: all cores); resume with the same count")
      ->check(CLI::NonNegativeNumber);
  train->add_option("--output,-o", output, "output directory (checkpoints, metrics.jsonl)")->capture_default_str();
  train
      ->add_option("--checkpoint", init_checkpoint,
                   "start from the weights of this checkpoint (fresh optimizer and schedule)")
      ->check(CLI::ExistingFile);
  train->add_flag("--resume", rt.resume, "continue the run in --output from last.safetensors");
  train->add_option("--eval-batch-size", rt.eval_batch_size, "evaluation batch size")->check(CLI::PositiveNumber);
  train->add_option("--progress", progress, "progress display: auto (bar on a terminal), bar, lines, none")
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}))
      ->capture_default_str();
  train->get_option("--checkpoint")->excludes(train->get_option("--resume"));

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

  // ---------------------------------------------------------------- inspect
  CLI::App* inspect = app.add_subcommand(
      "inspect", "Print a safetensors file's metadata and tensors (dtype, shape, CRC32, sum) as JSON");
  std::string inspect_file;
  bool inspect_values = false;
  inspect->add_option("file", inspect_file, "safetensors file")->required()->check(CLI::ExistingFile);
  inspect->add_flag("--values", inspect_values, "include every value");

  CLI11_PARSE(app, argc, argv);

  try {
    if (train->parsed()) {
      json given = sc.given();
      if (data_opt->count() > 0) {
        given["data"] = data_args.at(0);
        if (data_args.size() > 1) rt.data_dir = data_args[1];
      }
      rt.output = output;
      rt.init_checkpoint = init_checkpoint;
      rt.progress = trainer::parse_progress_mode(progress);
      return trainer::run_train(given, rt);
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
