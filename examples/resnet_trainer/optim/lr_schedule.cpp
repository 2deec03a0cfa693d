#include "optim/lr_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <sstream>
#include <stdexcept>
#include <string>

namespace trainer {
namespace {

std::string number_text(double v) {  // "1e+300", not std::to_string's 300 digits
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

void lr_schedule::validate() const {
  if (kind != "constant" && kind != "step" && kind != "multistep" && kind != "cosine")
    throw std::invalid_argument("lr_schedule: unknown kind \"" + kind +
                                "\" (expected constant, step, multistep or cosine)");
  // The optimizer takes the rate as a float: a finite double above FLT_MAX
  // would still reach it as Inf. NaN fails every `>=` below.
  constexpr double float_max = std::numeric_limits<float>::max();
  if (!(base_lr >= 0.0 && base_lr <= float_max))
    throw std::invalid_argument("lr_schedule: base_lr must be finite and in [0, 3.4e38], got " + number_text(base_lr));
  if (!(min_lr >= 0.0 && min_lr <= float_max))
    throw std::invalid_argument("lr_schedule: min_lr must be finite and in [0, 3.4e38], got " + number_text(min_lr));
  if (!(gamma >= 0.0 && std::isfinite(gamma)))
    throw std::invalid_argument("lr_schedule: gamma must be finite and >= 0, got " + number_text(gamma));
  if (kind == "step" && step_size < 1) throw std::invalid_argument("lr_schedule: step needs step_size >= 1 iterations");
  for (const std::int64_t m : milestones)
    if (m < 0) throw std::invalid_argument("lr_schedule: milestone " + std::to_string(m) + " is negative");
  if (kind == "multistep" && !std::is_sorted(milestones.begin(), milestones.end()))
    throw std::invalid_argument("lr_schedule: milestones must be in increasing order");
  if (kind == "cosine" && total_iters <= warmup_iters)
    throw std::invalid_argument("lr_schedule: cosine needs total_iters > warmup_iters");
  if (warmup_iters < 0 || !(warmup_start >= 0.0 && warmup_start <= 1.0))
    throw std::invalid_argument("lr_schedule: warmup_iters must be >= 0 and warmup_start in [0, 1]");
}

double lr_schedule::at(std::int64_t it) const {
  double lr = base_lr;
  if (kind == "step") {
    lr = base_lr * std::pow(gamma, static_cast<double>(it / step_size));
  } else if (kind == "multistep") {
    const auto passed = std::upper_bound(milestones.begin(), milestones.end(), it) - milestones.begin();
    lr = base_lr * std::pow(gamma, static_cast<double>(passed));
  } else if (kind == "cosine") {
    const double t = std::clamp(static_cast<double>(it - warmup_iters) / static_cast<double>(total_iters - warmup_iters),
                                0.0, 1.0);
    lr = min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * t));
  }
  if (it < warmup_iters)
    lr *= warmup_start + (1.0 - warmup_start) * static_cast<double>(it) / static_cast<double>(warmup_iters);
  return lr;
}

nlohmann::json lr_schedule::to_json() const {
  return {{"kind", kind},           {"base_lr", base_lr},         {"gamma", gamma},
          {"step_size", step_size}, {"milestones", milestones},   {"total_iters", total_iters},
          {"min_lr", min_lr},       {"warmup_iters", warmup_iters}, {"warmup_start", warmup_start}};
}

lr_schedule lr_schedule::from_json(const nlohmann::json& j) {
  lr_schedule s;
  s.kind = j.value("kind", s.kind);
  s.base_lr = j.value("base_lr", s.base_lr);
  s.gamma = j.value("gamma", s.gamma);
  s.step_size = j.value("step_size", s.step_size);
  s.milestones = j.value("milestones", s.milestones);
  s.total_iters = j.value("total_iters", s.total_iters);
  s.min_lr = j.value("min_lr", s.min_lr);
  s.warmup_iters = j.value("warmup_iters", s.warmup_iters);
  s.warmup_start = j.value("warmup_start", s.warmup_start);
  s.validate();
  return s;
}

}  // namespace trainer
