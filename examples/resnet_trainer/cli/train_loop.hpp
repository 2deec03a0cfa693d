// The training loop of psap-train as a library function with hooks, so
// that other drivers (a pruning run, tests, benchmarks) reuse it unchanged.
//
// begin(start)                    <- once per call: a pruner's step at init goes
//                                     here when start.epoch == 0
// One epoch:
//   epoch_begin(e)
//   for each batch k of epoch e (order and augmentation fixed by (seed, e)):
//     lr = schedule.at(iteration); forward; loss; backward
//     after_backward(step)          <- pruner.observe(): gradients are in the model
//     optimizer step
//     after_step(step)              <- pruner.after_update(): re-apply masks etc.
//     on_batch(step)                   progress display
//   epoch_end(e)                    <- pruner.step(net, e): prune at epoch ends
//   evaluate on the test set
//   on_epoch(report)                   metrics
//   on_checkpoint(state, report)       save (state is an epoch boundary)
// after the last epoch:
//   finalize(state)                 <- pruner.finalize(): keep-lists, compaction
//
// Everything the loop does is a pure function of (model, optimizer, data,
// config, start state), so a run resumed from an epoch-boundary checkpoint
// ends with bitwise the same weights as an uninterrupted one (same thread
// count: reductions are deterministic per thread count).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "data/dataset.hpp"
#include "data/loader.hpp"
#include "models/model.hpp"
#include "optim/evaluate.hpp"
#include "optim/lr_schedule.hpp"
#include "optim/sgd.hpp"

namespace trainer {

// A run that cannot go on (diverged loss, data that does not fit the model).
class training_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where a run stands at an epoch boundary.
struct loop_state {
  std::int64_t epoch = 0;      // completed epochs
  std::int64_t iteration = 0;  // optimizer steps taken
};

struct loop_config {
  std::int64_t epochs = 1;          // train until this many epochs are complete
  std::int64_t max_iterations = 0;  // > 0: also stop after this many optimizer steps (mid-epoch)
  lr_schedule schedule;             // positions in iterations
  loader_config train_loader;       // batch size, seed, shuffling, augmentation
  std::size_t eval_batch_size = 500;
  bool evaluate_each_epoch = true;  // needs a test set
};

// One optimizer step, as the hooks see it.
struct step_info {
  std::int64_t epoch = 0;      // 0-based epoch being trained
  std::size_t batch = 0;       // batch within the epoch
  std::size_t batches = 0;     // batches in this epoch
  std::int64_t iteration = 0;  // 0-based index of this step
  double lr = 0.0;
  double loss = 0.0;  // mean loss of this batch
  std::size_t correct = 0;
  std::size_t size = 0;
  // Running means over the epoch so far.
  double epoch_loss = 0.0;
  double epoch_accuracy = 0.0;
  std::size_t epoch_images = 0;
  double epoch_seconds = 0.0;
};

struct epoch_report {
  std::int64_t epoch = 0;      // 1-based: the number of completed epochs
  std::int64_t iteration = 0;  // steps taken after this epoch
  double lr = 0.0;             // lr of the epoch's first step
  double lr_last = 0.0;        // lr of its last step
  double train_loss = 0.0;
  double train_accuracy = 0.0;
  std::size_t train_images = 0;
  double images_per_second = 0.0;  // training throughput (evaluation excluded)
  double train_seconds = 0.0;
  double wall_seconds = 0.0;  // training + evaluation + hooks
  std::optional<eval_result> test;
};

struct training_hooks {
  // Extension points for a pruner (psap's four hooks) or any other policy.
  std::function<void(const loop_state& start)> begin;
  std::function<void(const step_info&)> after_backward;
  std::function<void(const step_info&)> after_step;
  std::function<void(std::int64_t epoch)> epoch_end;  // 0-based epoch just trained
  std::function<void(const loop_state&)> finalize;
  // Reporting and persistence.
  std::function<void(std::int64_t epoch, std::size_t batches)> epoch_begin;
  std::function<void(const step_info&)> on_batch;
  std::function<void(const epoch_report&)> on_epoch;
  std::function<void(const loop_state&, const epoch_report&)> on_checkpoint;
};

// Trains from `start` until cfg.epochs (or cfg.max_iterations); returns the
// final state. `test` may be null (no evaluation). Throws training_error if
// the data does not fit the model, the loss stops being finite, or after an
// epoch (before its evaluation and checkpoint) a parameter, BN running
// statistic or momentum buffer holds a NaN or Inf.
loop_state train_loop(model& m, sgd& opt, const dataset& train, const dataset* test, const loop_config& cfg,
                      loop_state start, const training_hooks& hooks);

// training_error naming the first F32 tensor of `m` (parameters, BN running
// statistics, bias maps) or of `opt`'s momentum buffers (opt may be null)
// that holds a NaN or Inf; `when` says where the run stands, e.g. "after
// epoch 3". One pass over the state: cheap next to an epoch.
void check_finite_state(model& m, sgd* opt, const std::string& when);

// Eval-mode loss/accuracy over the whole data set (normalised, unaugmented);
// training_error when the loss is not finite (the network's logits overflow
// or are NaN), instead of a NaN that JSON would write as null.
eval_result evaluate_dataset(model& m, const dataset& data, std::size_t batch_size);

// A batch_source (optim/evaluate.hpp) over a loader; the loader must outlive it.
batch_source loader_source(batch_loader& loader, std::uint64_t epoch);

}  // namespace trainer
