#pragma once
/// Per-iteration learning-rate schedules with an optional linear warm-up.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace trainer {

/// All positions are in iterations (optimizer steps), counted from 0.
///   constant:  lr = base
///   step:      lr = base · gamma^⌊it / step_size⌋
///   multistep: lr = base · gamma^(number of milestones ≤ it)   (MultiStepLR
///              stepped once per epoch, with milestones = epoch · iters_per_epoch)
///   cosine:    lr = min + (base − min)·(1 + cos(π·t))/2, t = (it − warmup)/(total − warmup),
///              clamped to [0, 1]
/// Warm-up: for it < warmup_iters the lr above is multiplied by
/// warmup_start + (1 − warmup_start)·it / warmup_iters.
struct lr_schedule {
  std::string kind = "constant";
  double base_lr = 0.1;
  double gamma = 0.1;
  std::int64_t step_size = 0;
  std::vector<std::int64_t> milestones;
  std::int64_t total_iters = 0;
  double min_lr = 0.0;
  std::int64_t warmup_iters = 0;
  double warmup_start = 0.0;

  /// Throws std::invalid_argument for an unknown kind, inconsistent fields,
  /// NaN/Inf (or beyond float range) rates and gamma, or a negative milestone.
  void validate() const;
  double at(std::int64_t iteration) const;

  nlohmann::json to_json() const;
  static lr_schedule from_json(const nlohmann::json& j);
};

}  // namespace trainer
