#include "optim/recipe.hpp"

#include <stdexcept>

namespace trainer {

std::int64_t recipe::total_iterations(std::int64_t iters_per_epoch) const {
  return iterations > 0 ? iterations : epochs * iters_per_epoch;
}

lr_schedule recipe::schedule_for(std::int64_t iters_per_epoch) const {
  lr_schedule s = schedule;
  if (iterations == 0) {
    s.step_size *= iters_per_epoch;
    for (auto& m : s.milestones) m *= iters_per_epoch;
    s.total_iters *= iters_per_epoch;
    s.warmup_iters *= iters_per_epoch;
  }
  s.validate();
  return s;
}

recipe get_recipe(const std::string& name) {
  recipe r;
  r.name = name;
  if (name == "sfp-cifar") {
    r.description = "SFP/FPGM CIFAR: 200 epochs, Nesterov 0.9, wd 5e-4, lr 0.1 x0.2 at 60/120/160";
    r.epochs = 200;
    r.sgd = {0.1f, 0.9f, 0.0f, 5e-4f, true};
    r.schedule.kind = "multistep";
    r.schedule.base_lr = 0.1;
    r.schedule.gamma = 0.2;
    r.schedule.milestones = {60, 120, 160};
  } else if (name == "he2016") {
    r.description = "He et al. 2016: 64k iterations, momentum 0.9, wd 1e-4, lr 0.1 /10 at 32k and 48k";
    r.iterations = 64000;
    r.sgd = {0.1f, 0.9f, 0.0f, 1e-4f, false};
    r.schedule.kind = "multistep";
    r.schedule.base_lr = 0.1;
    r.schedule.gamma = 0.1;
    r.schedule.milestones = {32000, 48000};
  } else if (name == "fashion") {
    r.description = "Fashion-MNIST: 15 epochs, Nesterov 0.9, wd 5e-4, lr 0.1 cosine, 1 warm-up epoch";
    r.epochs = 15;
    r.sgd = {0.1f, 0.9f, 0.0f, 5e-4f, true};
    r.schedule.kind = "cosine";
    r.schedule.base_lr = 0.1;
    r.schedule.total_iters = 15;
    r.schedule.warmup_iters = 1;
    r.schedule.warmup_start = 0.1;
  } else {
    throw std::invalid_argument("unknown recipe \"" + name + "\" (known: sfp-cifar, he2016, fashion)");
  }
  r.batch_size = 128;
  return r;
}

std::vector<std::string> recipe_names() { return {"sfp-cifar", "he2016", "fashion"}; }

}  // namespace trainer
