// End-to-end: a tiny ResNet trained on a few hundred synthetic images must
// fit them (loss falls, accuracy well above chance).
#include <vector>

#include "models/resnet.hpp"
#include "models/vgg.hpp"
#include "nn/cross_entropy.hpp"
#include "optim/evaluate.hpp"
#include "optim/lr_schedule.hpp"
#include "optim/sgd.hpp"
#include "tests/trainer_test_util.hpp"

using namespace trainer;
using namespace trainer::test;

namespace {

// Class k brightens quadrant k of a noisy 12×12 image.
void make_data(int count, rng& g, std::vector<float>& x, std::vector<std::int32_t>& y) {
  x.assign(static_cast<std::size_t>(count) * 144, 0.0f);
  y.resize(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    const int k = static_cast<int>(g.below(4));
    y[static_cast<std::size_t>(i)] = k;
    for (int r = 0; r < 12; ++r)
      for (int c = 0; c < 12; ++c) {
        const bool on = (r / 6) * 2 + (c / 6) == k;
        x[static_cast<std::size_t>(i * 144 + r * 12 + c)] = static_cast<float>(g.normal() + (on ? 1.0 : 0.0));
      }
  }
}

void train_and_check(model& m, std::uint64_t s) {
  rng g(s);
  std::vector<float> x;
  std::vector<std::int32_t> y;
  make_data(256, g, x, y);
  sgd opt(m, {0.05f, 0.9f, 0.0f, 5e-4f, true});
  lr_schedule sched;
  sched.kind = "cosine";
  sched.base_lr = 0.05;
  sched.total_iters = 60;
  sched.warmup_iters = 5;
  cross_entropy ce;
  std::vector<float> logits(32 * 4), dlogits(logits.size());
  const float before = static_cast<float>(evaluate(m, array_source(x.data(), y.data(), 256, 144, 64)).loss);
  for (int it = 0; it < 60; ++it) {
    const int b = it % 8;
    opt.set_lr(static_cast<float>(sched.at(it)));
    m.forward(x.data() + b * 32 * 144, 32, logits.data(), true);
    ce.forward(logits.data(), y.data() + b * 32, 32, 4);
    ce.backward(dlogits.data());
    m.backward(dlogits.data());
    opt.step();
  }
  const auto after = evaluate(m, array_source(x.data(), y.data(), 256, 144, 64));
  MESSAGE("loss " << before << " -> " << after.loss << ", accuracy " << after.accuracy);
  CHECK(after.loss < 0.5 * before);
  CHECK(after.accuracy > 0.8);
}

}  // namespace

TEST_CASE("a tiny resnet fits synthetic quadrant images") {
  auto cfg = resnet_config(8, 4, 1, 12, 12);
  auto m = make_model(cfg, seed());
  train_and_check(*m, seed() + 11);
}

TEST_CASE("a narrow vgg16 fits synthetic quadrant images") {
  auto cfg = vgg_config(4, 1, 12, 12);
  cfg["widths"] = std::vector<int>(13, 8);
  auto m = make_model(cfg, seed());
  train_and_check(*m, seed() + 12);
}
