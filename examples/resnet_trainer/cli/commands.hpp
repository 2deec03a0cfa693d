// The psap-train subcommands as functions: main.cpp only parses the command
// line into these structures. `prune` (cli/prune_command.hpp) reuses the
// settings, train_loop() and the checkpoints, and adds psap's hooks.
#pragma once

#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/checkpoint.hpp"
#include "cli/progress.hpp"
#include "cli/train_loop.hpp"
#include "data/registry.hpp"

namespace trainer {

// A wrong option value or combination; main prints it and exits with 2.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Options that change how a run executes but not the weights it produces.
struct runtime_options {
  std::filesystem::path output = "runs/train";
  std::filesystem::path data_dir;         // empty: the data set's default (or the checkpoint's)
  std::filesystem::path init_checkpoint;  // start from these weights (fresh optimizer and counters)
  bool resume = false;                    // continue <output>/last.safetensors
  int threads = -1;                       // OpenMP threads; 0: the runtime's default; -1 (not given): see resolve_threads
  std::string device = "cpu";             // cpu, cuda, cuda:N, emulated (device/device_model.hpp)
  progress_mode progress = progress_mode::automatic;
  std::size_t eval_batch_size = 500;
  std::FILE* log = stderr;
};

// The settings that determine a run's result, as a flat JSON object whose
// keys are the long option names without dashes (model, shortcut, data,
// train_subset, test_subset, standard_stats, recipe, epochs, iterations,
// batch_size, lr, momentum, nesterov, weight_decay, schedule, schedule_unit,
// milestones, gamma, step_size, warmup, warmup_start, min_lr, pad, flip,
// seed). `given` holds only what the user set; the rest comes from the
// recipe and the data set. `train_images` is the training-set size after
// subsetting (an iteration-based recipe needs it to count epochs).
[[nodiscard]] nlohmann::json resolve_settings(const nlohmann::json& given, std::size_t train_images);

// Data options (name, subsets, statistics) of given/resolved settings.
[[nodiscard]] data_options data_options_from(const nlohmann::json& settings, const std::filesystem::path& dir);

// The network the settings ask for, sized for the data set.
[[nodiscard]] nlohmann::json model_config_from(const nlohmann::json& settings, const dataset& train);

// The network of a run, initialised from `seed`; checkpoint_error when the
// configuration (a checkpoint's or the settings') cannot be built.
[[nodiscard]] std::unique_ptr<model> build_model(const nlohmann::json& model_cfg, std::uint64_t seed);

// usage_error when the user's --model differs from the model that wrote the
// checkpoint `file` (whose metadata is `meta`).
void check_model_matches(const nlohmann::json& given, const checkpoint_meta& meta, const std::filesystem::path& file);

// Everything train_loop() needs, built from settings for a data set.
struct run_plan {
  nlohmann::json settings;
  loop_config loop;
  sgd_options sgd;
  std::uint64_t seed = 0;
};
[[nodiscard]] run_plan plan_from_settings(const nlohmann::json& settings, const dataset& train);

// One metrics.jsonl line for an epoch (docs/checkpoint-format.md).
[[nodiscard]] nlohmann::json metrics_json(const epoch_report& r);
// Keeps the lines of metrics.jsonl whose "epoch" is <= upto (a resumed run
// repeats the epochs after its checkpoint); rewritten atomically.
void truncate_metrics(const std::filesystem::path& file, std::int64_t upto);
// Appends one line to a file (metrics.jsonl); io_error if it cannot.
void append_line(const std::filesystem::path& file, const std::string& line);

// Sets the OpenMP thread count (no-op without OpenMP); returns the count in use.
int apply_threads(int threads);
// The thread count a run uses: --threads when given; else the count the
// resumed checkpoint was written with, if any (bitwise resumption needs it,
// and runs sharing a machine side by side must not grow to every core);
// else 0. checkpoint_threads is 0 when no checkpoint is resumed.
int resolve_threads(int given, int checkpoint_threads);

// psap-train train / eval / inspect. Return the process exit code; errors
// are thrown (data_error, io_error, checkpoint_error, training_error,
// usage_error) and reported by main.
int run_train(const nlohmann::json& given, const runtime_options& rt);

struct eval_options {
  std::filesystem::path checkpoint;
  std::optional<std::string> data;  // default: the checkpoint's data set
  std::filesystem::path data_dir;
  std::size_t test_subset = 0;
  std::string split = "test";
  std::size_t batch_size = 500;
  int threads = 0;
  std::string device = "cpu";  // where the forward passes run (device/device_model.hpp)
  // When set: also write the evaluated images (normalised "inputs" F32 and
  // raw "pixels" U8, N x C x H x W), "labels" (I64) and eval-mode "logits"
  // (F32, N x classes) to this safetensors file, in data set order, with the
  // normalisation (mean, std) and model_config in its metadata. Lets other
  // runtimes (e.g. an ONNX export) be compared with psap-train's own logits.
  std::filesystem::path dump;
};
int run_eval(const eval_options& opt);

int run_inspect(const std::filesystem::path& file, bool values);

}  // namespace trainer
