#pragma once
/// Named training recipes: batch size, length, SGD settings and LR schedule.

#include <cstdint>
#include <string>
#include <vector>

#include "optim/lr_schedule.hpp"
#include "optim/sgd.hpp"

namespace trainer {

/// A recipe is defined either in epochs (positions of `schedule` are epochs)
/// or in iterations (`iterations` > 0, positions are iterations).
struct recipe {
  std::string name;
  std::string description;
  int batch_size = 128;
  std::int64_t epochs = 0;
  std::int64_t iterations = 0;
  sgd_options sgd;
  lr_schedule schedule;

  /// Total optimizer steps for a data set of iters_per_epoch batches.
  std::int64_t total_iterations(std::int64_t iters_per_epoch) const;
  /// The schedule with every position in iterations.
  lr_schedule schedule_for(std::int64_t iters_per_epoch) const;
};

/// "sfp-cifar": SFP/FPGM — 200 epochs, batch 128, Nesterov 0.9, wd 5e-4,
///              lr 0.1 ×0.2 at epochs 60/120/160.
/// "he2016":    He et al. 2016 §4.2 — 64k iterations, batch 128, momentum
///              0.9, wd 1e-4, lr 0.1 ÷10 at 32k and 48k iterations.
/// "fashion":   short Fashion-MNIST run — 15 epochs, batch 128, Nesterov
///              0.9, wd 5e-4, lr 0.1 cosine to 0 after a 1-epoch warm-up.
/// Throws std::invalid_argument naming the known recipes.
recipe get_recipe(const std::string& name);
std::vector<std::string> recipe_names();

}  // namespace trainer
