// Optimiser tests: SGD against steps computed by hand from torch.optim.SGD's
// documented update, LR schedules against hand values, recipes, BN
// recalibration.
#include <cmath>
#include <limits>
#include <vector>

#include "models/resnet.hpp"
#include "optim/bn_recalibrate.hpp"
#include "optim/evaluate.hpp"
#include "optim/lr_schedule.hpp"
#include "optim/recipe.hpp"
#include "optim/sgd.hpp"
#include "tests/trainer_test_util.hpp"

using namespace trainer;
using namespace trainer::test;

namespace {
struct fake_param {
  std::vector<float> w, g;
  std::vector<named_tensor> view() {
    return {{"p", {static_cast<std::int64_t>(w.size())}, dtype::f32, w.data(), g.data(), true},
            {"buffer", {1}, dtype::f32, w.data(), nullptr, false}};
  }
};
}  // namespace

TEST_CASE("sgd with Nesterov momentum and weight decay, by hand") {
  fake_param p{{1.0f, -2.0f}, {0.5f, 0.25f}};
  sgd opt(p.view(), {0.1f, 0.9f, 0.0f, 0.01f, true});
  CHECK(!opt.has_momentum());
  // Step 1, element 0: g = 0.5 + 0.01·1 = 0.51; buf = 0.51; g' = 0.51 + 0.9·0.51 = 0.969;
  // w = 1 − 0.0969 = 0.9031.
  opt.step();
  CHECK(p.w[0] == doctest::Approx(0.9031).epsilon(1e-6));
  CHECK(opt.momentum_buffer("p")[0] == doctest::Approx(0.51).epsilon(1e-6));
  CHECK(opt.has_momentum());
  // Element 1: g = 0.25 − 0.02 = 0.23; buf = 0.23; g' = 0.437; w = −2.0437.
  CHECK(p.w[1] == doctest::Approx(-2.0437).epsilon(1e-6));
  // Step 2, element 0, new grad 0.1: g = 0.1 + 0.009031 = 0.109031;
  // buf = 0.9·0.51 + 0.109031 = 0.568031; g' = 0.109031 + 0.9·0.568031 = 0.6202589;
  // w = 0.9031 − 0.06202589 = 0.84107411.
  p.g = {0.1f, 0.0f};
  opt.step();
  CHECK(p.w[0] == doctest::Approx(0.84107411).epsilon(1e-6));
  CHECK(opt.momentum_buffer("p")[0] == doctest::Approx(0.568031).epsilon(1e-6));
  CHECK(opt.momentum_buffer("buffer") == nullptr);
  CHECK(opt.momentum_buffers().size() == 1);
}

TEST_CASE("sgd: plain momentum with dampening, and no momentum") {
  fake_param p{{2.0f}, {1.0f}};
  sgd opt(p.view(), {0.5f, 0.5f, 0.5f, 0.0f, false});
  // Step 1: buf = g = 1 (no dampening on the first step); w = 2 − 0.5 = 1.5.
  opt.step();
  CHECK(p.w[0] == doctest::Approx(1.5));
  // Step 2: buf = 0.5·1 + 0.5·1 = 1; w = 1.5 − 0.5 = 1.0.
  opt.step();
  CHECK(p.w[0] == doctest::Approx(1.0));
  // Step 3, g = 3: buf = 0.5 + 1.5 = 2; w = 1 − 1 = 0.
  p.g[0] = 3.0f;
  opt.step();
  CHECK(p.w[0] == doctest::Approx(0.0));

  fake_param q{{1.0f}, {2.0f}};
  sgd plain(q.view(), {0.1f, 0.0f, 0.0f, 0.5f, false});
  plain.step();  // w = 1 − 0.1·(2 + 0.5) = 0.75
  CHECK(q.w[0] == doctest::Approx(0.75));
}

TEST_CASE("sgd rejects a trainable tensor without a gradient") {
  float w = 1.0f;
  std::vector<named_tensor> v{{"w", {1}, dtype::f32, &w, nullptr, true}};
  CHECK_THROWS_AS(sgd(v, {}), std::invalid_argument);
}

TEST_CASE("lr schedules by hand") {
  lr_schedule ms;
  ms.kind = "multistep";
  ms.base_lr = 0.1;
  ms.gamma = 0.2;
  ms.milestones = {60, 120, 160};
  CHECK(ms.at(0) == doctest::Approx(0.1));
  CHECK(ms.at(59) == doctest::Approx(0.1));
  CHECK(ms.at(60) == doctest::Approx(0.02));
  CHECK(ms.at(120) == doctest::Approx(0.004));
  CHECK(ms.at(199) == doctest::Approx(0.0008));

  lr_schedule st;
  st.kind = "step";
  st.base_lr = 1.0;
  st.gamma = 0.5;
  st.step_size = 10;
  CHECK(st.at(9) == doctest::Approx(1.0));
  CHECK(st.at(10) == doctest::Approx(0.5));
  CHECK(st.at(35) == doctest::Approx(0.125));

  lr_schedule cs;
  cs.kind = "cosine";
  cs.base_lr = 0.1;
  cs.min_lr = 0.0;
  cs.total_iters = 110;
  cs.warmup_iters = 10;
  cs.warmup_start = 0.0;
  CHECK(cs.at(0) == doctest::Approx(0.0));
  CHECK(cs.at(5) == doctest::Approx(0.05));  // half-way through warm-up
  CHECK(cs.at(10) == doctest::Approx(0.1));
  CHECK(cs.at(60) == doctest::Approx(0.05));  // cos(π/2) = 0
  CHECK(cs.at(85) == doctest::Approx(0.05 * (1 + std::cos(0.75 * 3.141592653589793))));
  CHECK(cs.at(110) == doctest::Approx(0.0));
  CHECK(cs.at(500) == doctest::Approx(0.0));

  CHECK(lr_schedule::from_json(cs.to_json()).at(85) == doctest::Approx(cs.at(85)));
  lr_schedule bad;
  bad.kind = "exponential";
  CHECK_THROWS_AS(bad.validate(), std::invalid_argument);
}

TEST_CASE("lr_schedule::validate rejects NaN/Inf rates and factors and negative milestones") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  lr_schedule ok;
  ok.kind = "multistep";
  ok.milestones = {0, 5};
  ok.base_lr = std::numeric_limits<float>::max();  // the largest rate the float optimizer can take
  CHECK_NOTHROW(ok.validate());
  const auto rejects = [&](auto change, const char* field) {
    lr_schedule s = ok;
    change(s);
    CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains(field), std::invalid_argument);
  };
  rejects([&](lr_schedule& s) { s.base_lr = nan; }, "base_lr");
  rejects([&](lr_schedule& s) { s.base_lr = 1e39; }, "base_lr");  // finite, but Inf as a float
  rejects([&](lr_schedule& s) { s.gamma = nan; }, "gamma");
  rejects([&](lr_schedule& s) { s.gamma = inf; }, "gamma");
  rejects([&](lr_schedule& s) { s.min_lr = nan; }, "min_lr");
  rejects([&](lr_schedule& s) { s.min_lr = 1e300; }, "min_lr");
  rejects([&](lr_schedule& s) { s.warmup_start = nan; }, "warmup_start");
  rejects([&](lr_schedule& s) { s.milestones = {-5, 3}; }, "milestone -5 is negative");
}

TEST_CASE("recipes") {
  const auto sfp = get_recipe("sfp-cifar");
  CHECK(sfp.epochs == 200);
  CHECK(sfp.batch_size == 128);
  CHECK(sfp.sgd.nesterov);
  CHECK(sfp.sgd.weight_decay == doctest::Approx(5e-4));
  const auto s = sfp.schedule_for(391);
  CHECK(s.at(60 * 391 - 1) == doctest::Approx(0.1));
  CHECK(s.at(60 * 391) == doctest::Approx(0.02));
  CHECK(s.at(160 * 391) == doctest::Approx(0.1 * 0.2 * 0.2 * 0.2));
  CHECK(sfp.total_iterations(391) == 200 * 391);

  const auto he = get_recipe("he2016");
  CHECK(he.total_iterations(391) == 64000);
  CHECK(!he.sgd.nesterov);
  CHECK(he.sgd.weight_decay == doctest::Approx(1e-4));
  const auto hs = he.schedule_for(391);
  CHECK(hs.at(31999) == doctest::Approx(0.1));
  CHECK(hs.at(32000) == doctest::Approx(0.01));
  CHECK(hs.at(48000) == doctest::Approx(0.001));

  const auto fa = get_recipe("fashion");
  const auto fs = fa.schedule_for(469);
  CHECK(fs.at(469) == doctest::Approx(0.1));
  CHECK(fs.at(fa.total_iterations(469)) == doctest::Approx(0.0));
  CHECK_THROWS_AS(get_recipe("nope"), std::invalid_argument);
}

TEST_CASE("BN recalibration: cumulative averaging, momentum restored, weights untouched") {
  auto m = make_model(resnet_config(8, 3, 1, 8, 8), seed());
  rng g(seed());
  const int count = 40;
  std::vector<float> x(static_cast<std::size_t>(count) * 64);
  for (auto& v : x) v = static_cast<float>(g.normal());
  std::vector<std::int32_t> y(count, 0);
  auto weights_before = m->tensors().front();
  std::vector<float> w0(weights_before.f32(), weights_before.f32() + weights_before.numel());

  CHECK(recalibrate_bn(*m, array_source(x.data(), y.data(), count, 64, 10), 3) == 3);
  auto bn = m->bn_layers().front().bn;
  CHECK(bn->num_batches_tracked() == 3);
  CHECK(*bn->momentum() == 0.1f);
  const std::vector<float> rm(bn->running_mean(), bn->running_mean() + bn->channels());
  const std::vector<float> rv(bn->running_var(), bn->running_var() + bn->channels());
  // Independent of the previous running state: a second pass gives the same.
  std::fill(bn->running_mean(), bn->running_mean() + bn->channels(), 5.0f);
  recalibrate_bn(*m, array_source(x.data(), y.data(), count, 64, 10), 3);
  for (int c = 0; c < bn->channels(); ++c) {
    CHECK(bn->running_mean()[c] == rm[static_cast<std::size_t>(c)]);
    CHECK(bn->running_var()[c] == rv[static_cast<std::size_t>(c)]);
  }
  // Cumulative averaging over three equal batches: the stem BN's running mean
  // is the mean of the stem conv's output over all 30 images.
  tensor first30({30, 1, 8, 8}), conv_out;
  std::copy(x.begin(), x.begin() + 30 * 64, first30.data());
  m->conv_layers().front().conv->forward(first30, conv_out, false);
  for (int c = 0; c < bn->channels(); ++c) {
    double mean = 0.0;
    for (int n = 0; n < 30; ++n)
      for (int i = 0; i < 64; ++i) mean += conv_out.plane(n, c)[i];
    CHECK(bn->running_mean()[c] == doctest::Approx(mean / (30 * 64)).epsilon(1e-4));
  }
  CHECK(recalibrate_bn(*m, array_source(x.data(), y.data(), count, 64, 10), 100) == 4);
  CHECK(std::equal(w0.begin(), w0.end(), weights_before.f32()));
}

TEST_CASE("evaluate counts loss and accuracy over all batches") {
  auto m = make_model(resnet_config(8, 3, 1, 8, 8), seed());
  rng g(seed());
  const int count = 23;
  std::vector<float> x(static_cast<std::size_t>(count) * 64);
  for (auto& v : x) v = static_cast<float>(g.normal());
  std::vector<std::int32_t> y(count);
  for (auto& v : y) v = static_cast<std::int32_t>(g.below(3));
  const auto r = evaluate(*m, array_source(x.data(), y.data(), count, 64, 10));
  CHECK(r.count == count);
  // The same numbers from one batch of all 23 images.
  const auto one = evaluate(*m, array_source(x.data(), y.data(), count, 64, 64));
  CHECK(r.loss == doctest::Approx(one.loss).epsilon(1e-5));
  CHECK(r.accuracy == doctest::Approx(one.accuracy));
  CHECK(r.accuracy >= 0.0);
  CHECK(r.accuracy <= 1.0);
}
