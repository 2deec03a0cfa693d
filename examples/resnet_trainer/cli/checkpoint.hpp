// Checkpoints of the reference trainer as safetensors files (see
// docs/checkpoint-format.md): the model's state dict under PyTorch names,
// SGD momentum buffers under "optim.momentum.<name>", optional extra tensors
// (e.g. "pruner.state"), and the training state in __metadata__.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/train_loop.hpp"
#include "io/safetensors.hpp"
#include "models/model.hpp"
#include "optim/lr_schedule.hpp"
#include "optim/sgd.hpp"

namespace trainer {

inline constexpr const char* checkpoint_version = "1";

inline constexpr const char* momentum_prefix = "optim.momentum.";

// Problems with a checkpoint's content (missing tensors, wrong shapes,
// incompatible settings); file-level problems are safetensors_error/io_error.
class checkpoint_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Everything in __metadata__ besides the tensors.
struct checkpoint_meta {
  loop_state state;
  std::uint64_t seed = 0;
  std::string model_name;                              // e.g. "resnet20" (informative)
  nlohmann::json model_config;                         // make_model(model_config) rebuilds the network
  nlohmann::json settings = nlohmann::json::object();  // the run's resolved options (psap-train)
  lr_schedule schedule;                                // positions in iterations
  sgd_options sgd;
  bool has_momentum = false;
  int threads = 0;                                    // OpenMP threads of the run (bitwise resume needs the same)
  nlohmann::json metrics = nlohmann::json::object();  // the last epoch's metrics
  std::map<std::string, std::string> extra;           // further metadata entries, kept verbatim
};

// The model's state dict, in its own order, as F32/I64 tensors.
void add_model_tensors(tensor_archive& a, model& m);
// The momentum buffers (only once the optimizer has stepped, as in PyTorch).
void add_optimizer_tensors(tensor_archive& a, sgd& opt);

// Copies every state-dict entry of `m` from the archive. Missing tensors,
// shape or dtype mismatches, unknown tensors (other than the optim. and
// pruner. namespaces), NaN/Inf values and negative BN running variances
// throw checkpoint_error naming `source` and the tensor.
void load_model_tensors(const tensor_archive& a, model& m, const std::string& source);
// Restores momentum buffers when the archive has them (NaN/Inf rejected as
// above); has_momentum follows.
void load_optimizer_tensors(const tensor_archive& a, sgd& opt, const std::string& source);

[[nodiscard]] std::map<std::string, std::string> encode_meta(const checkpoint_meta& meta);
[[nodiscard]] checkpoint_meta decode_meta(const std::map<std::string, std::string>& md, const std::string& source);

// Writes model (+ optimizer when given) + meta atomically; `extra` may add
// tensors (e.g. "pruner.state") before the file is written. training_error
// (check_finite_state) instead of writing a NaN or Inf.
void save_checkpoint(const std::filesystem::path& path, model& m, sgd* opt, const checkpoint_meta& meta,
                     const std::function<void(tensor_archive&)>& extra = {});

struct loaded_checkpoint {
  tensor_archive archive;
  checkpoint_meta meta;
};
// Reads and decodes a checkpoint file (no model needed).
[[nodiscard]] loaded_checkpoint read_checkpoint(const std::filesystem::path& path);
// Builds the recorded architecture and loads its weights.
[[nodiscard]] std::unique_ptr<model> model_from_checkpoint(const loaded_checkpoint& ck, const std::string& source);

}  // namespace trainer
