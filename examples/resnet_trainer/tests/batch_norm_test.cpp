// Batch norm tests: PyTorch's semantics (ε, momentum, biased/unbiased
// variance), gradients of the plain and fused bn→(add)→ReLU paths by finite
// differences of a double reference, the gate gradient by one-sided finite
// differences at γ = 0⁺, and exact zeros for gated channels.
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "nn/batch_norm.hpp"
#include "tests/trainer_test_util.hpp"

namespace {

using namespace trainer;
using namespace trainer::test;

// y = [relu](γ·(x − μ)/√(σ²_biased + ε) + β [+ r]) per channel, in double.
std::vector<double> bn_reference(const std::vector<double>& x, shape4 s, const std::vector<double>& gamma,
                                 const std::vector<double>& beta, const std::vector<double>* r, bool relu_after,
                                 double eps = 1e-5) {
  const std::size_t hw = s.plane();
  const double m = static_cast<double>(s.n) * static_cast<double>(hw);
  std::vector<double> y(x.size());
  for (int c = 0; c < s.c; ++c) {
    double mean = 0.0, var = 0.0;
    for (int n = 0; n < s.n; ++n)
      for (std::size_t i = 0; i < hw; ++i) mean += x[(static_cast<std::size_t>(n * s.c + c)) * hw + i];
    mean /= m;
    for (int n = 0; n < s.n; ++n)
      for (std::size_t i = 0; i < hw; ++i) {
        const double d = x[(static_cast<std::size_t>(n * s.c + c)) * hw + i] - mean;
        var += d * d;
      }
    var /= m;
    for (int n = 0; n < s.n; ++n)
      for (std::size_t i = 0; i < hw; ++i) {
        const std::size_t k = (static_cast<std::size_t>(n * s.c + c)) * hw + i;
        double v = gamma[static_cast<std::size_t>(c)] * (x[k] - mean) / std::sqrt(var + eps) + beta[static_cast<std::size_t>(c)];
        if (r != nullptr) v += (*r)[k];
        y[k] = relu_after ? std::max(v, 0.0) : v;
      }
  }
  return y;
}

void set_params(batch_norm& bn, rng& g) {
  for (int c = 0; c < bn.channels(); ++c) {
    bn.gamma()[c] = static_cast<float>(g.uniform(0.5, 1.5));
    bn.beta()[c] = static_cast<float>(g.uniform(-0.5, 0.5));
  }
}

}  // namespace

TEST_CASE("batch norm train forward: batch statistics, running update with unbiased variance") {
  rng g(seed());
  const shape4 s{4, 3, 3, 2};
  batch_norm bn(3);
  CHECK(bn.eps() == 1e-5f);
  CHECK(*bn.momentum() == 0.1f);
  for (int c = 0; c < 3; ++c) {
    CHECK(bn.gamma()[c] == 1.0f);
    CHECK(bn.beta()[c] == 0.0f);
  }
  set_params(bn, g);
  tensor x = random_tensor(s, g, 2.0);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] += 3.0f;  // a mean far from 0
  tensor y;
  bn.forward(x, y, true);
  const auto xd = to_double(x);
  const auto gam = to_double(bn.gamma(), 3), bet = to_double(bn.beta(), 3);
  CHECK(rel_error(to_double(y), bn_reference(xd, s, gam, bet, nullptr, false)) < 1e-6);
  for (int c = 0; c < 3; ++c) {
    double mean = 0.0, sq = 0.0;
    for (int n = 0; n < 4; ++n)
      for (int i = 0; i < 6; ++i) mean += xd[static_cast<std::size_t>((n * 3 + c) * 6 + i)];
    mean /= 24;
    for (int n = 0; n < 4; ++n)
      for (int i = 0; i < 6; ++i) sq += std::pow(xd[static_cast<std::size_t>((n * 3 + c) * 6 + i)] - mean, 2);
    CHECK(bn.running_mean()[c] == doctest::Approx(0.1 * mean).epsilon(1e-5));
    CHECK(bn.running_var()[c] == doctest::Approx(0.9 + 0.1 * sq / 23).epsilon(1e-5));
  }
  CHECK(bn.num_batches_tracked() == 1);

  // Eval mode normalises with the running statistics.
  tensor ye;
  bn.forward(x, ye, false);
  for (int n = 0; n < 4; ++n)
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < 6; ++i) {
        const double v = xd[static_cast<std::size_t>((n * 3 + c) * 6 + i)];
        const double e = gam[static_cast<std::size_t>(c)] * (v - bn.running_mean()[c]) / std::sqrt(bn.running_var()[c] + 1e-5) + bet[static_cast<std::size_t>(c)];
        CHECK(ye.plane(n, c)[i] == doctest::Approx(e).epsilon(1e-5));
      }
  CHECK(bn.num_batches_tracked() == 1);
}

TEST_CASE("batch norm with momentum None keeps the plain average of batch statistics") {
  rng g(seed());
  batch_norm bn(2);
  bn.set_momentum(std::nullopt);
  bn.reset_running_stats();
  double mean_sum[2] = {0, 0}, var_sum[2] = {0, 0};
  tensor y;
  for (int b = 0; b < 3; ++b) {
    const tensor x = random_tensor({3, 2, 2, 2}, g, 1.0 + b);
    bn.forward(x, y, true);
    for (int c = 0; c < 2; ++c) {
      double m = 0.0, q = 0.0;
      for (int n = 0; n < 3; ++n)
        for (int i = 0; i < 4; ++i) m += x.plane(n, c)[i];
      m /= 12;
      for (int n = 0; n < 3; ++n)
        for (int i = 0; i < 4; ++i) q += std::pow(x.plane(n, c)[i] - m, 2);
      mean_sum[c] += m;
      var_sum[c] += q / 11;
    }
  }
  for (int c = 0; c < 2; ++c) {
    CHECK(bn.running_mean()[c] == doctest::Approx(mean_sum[c] / 3).epsilon(1e-5));
    CHECK(bn.running_var()[c] == doctest::Approx(var_sum[c] / 3).epsilon(1e-5));
  }
}

TEST_CASE("batch norm backward (no ReLU) by finite differences") {
  rng g(seed());
  const shape4 s{3, 2, 2, 3};
  batch_norm bn(2);
  set_params(bn, g);
  const tensor x = random_tensor(s, g);
  tensor y, dx;
  bn.forward(x, y, true);
  const tensor r = random_tensor(s, g);
  bn.backward(r, dx);
  const auto xd = to_double(x), rd = to_double(r);
  const auto gam = to_double(bn.gamma(), 2), bet = to_double(bn.beta(), 2);
  CHECK(rel_error(to_double(dx), numeric_gradient([&](const std::vector<double>& v) { return dot(rd, bn_reference(v, s, gam, bet, nullptr, false)); }, xd)) < 1e-4);
  const auto ng = numeric_gradient([&](const std::vector<double>& v) { return dot(rd, bn_reference(xd, s, v, bet, nullptr, false)); }, gam);
  CHECK(rel_error(to_double(bn.gamma_grad(), 2), ng) < 1e-5);
  CHECK(rel_error(to_double(bn.gate_grad(), 2), ng) < 1e-5);
  CHECK(rel_error(to_double(bn.beta_grad(), 2), numeric_gradient([&](const std::vector<double>& v) { return dot(rd, bn_reference(xd, s, gam, v, nullptr, false)); }, bet)) < 1e-5);
}

TEST_CASE("fused bn -> add -> relu backward by finite differences") {
  rng g(seed());
  const shape4 s{4, 3, 3, 3};
  for (const bool with_residual : {false, true}) {
    CAPTURE(with_residual);
    batch_norm bn(3);
    set_params(bn, g);
    const tensor x = random_tensor(s, g);
    const tensor res = random_tensor(s, g);
    tensor z, y, dx, gz;
    bn.forward_relu(x, with_residual ? &res : nullptr, z, y, true);
    const auto xd = to_double(x), resd = to_double(res);
    const auto gam = to_double(bn.gamma(), 3), bet = to_double(bn.beta(), 3);
    const std::vector<double>* rp = with_residual ? &resd : nullptr;
    CHECK(rel_error(to_double(y), bn_reference(xd, s, gam, bet, rp, true)) < 1e-6);
    const tensor ga = random_tensor(s, g);
    const auto gad = to_double(ga);
    bn.backward_relu(ga, z, dx, &gz);
    CHECK(rel_error(to_double(dx), numeric_gradient([&](const std::vector<double>& v) { return dot(gad, bn_reference(v, s, gam, bet, rp, true)); }, xd)) < 1e-4);
    const auto ng = numeric_gradient([&](const std::vector<double>& v) { return dot(gad, bn_reference(xd, s, v, bet, rp, true)); }, gam);
    CHECK(rel_error(to_double(bn.gamma_grad(), 3), ng) < 1e-5);
    // An ordinary channel: the gate gradient is ∂L/∂γ.
    CHECK(rel_error(to_double(bn.gate_grad(), 3), ng) < 1e-5);
    CHECK(rel_error(to_double(bn.beta_grad(), 3), numeric_gradient([&](const std::vector<double>& v) { return dot(gad, bn_reference(xd, s, gam, v, rp, true)); }, bet)) < 1e-5);
    if (with_residual)
      CHECK(rel_error(to_double(gz), numeric_gradient([&](const std::vector<double>& v) { return dot(gad, bn_reference(xd, s, gam, bet, &v, true)); }, resd)) < 1e-5);
  }
}

TEST_CASE("gate gradient of a gated channel is the one-sided derivative at gamma = 0+") {
  rng g(seed());
  const shape4 s{4, 3, 3, 3};
  for (const bool with_residual : {false, true}) {
    CAPTURE(with_residual);
    batch_norm bn(3);
    set_params(bn, g);
    bn.gamma()[1] = 0.0f;  // channel 1 is gated
    bn.beta()[1] = 0.0f;
    const tensor x = random_tensor(s, g);
    // A post-ReLU shortcut: about half its entries are exactly 0, which
    // exercises the z == 0 branch.
    tensor res = random_tensor(s, g);
    for (std::size_t i = 0; i < res.size(); ++i) res.data()[i] = std::max(res.data()[i], 0.0f);
    tensor z, y, dx, gz;
    bn.forward_relu(x, with_residual ? &res : nullptr, z, y, true);
    const tensor ga = random_tensor(s, g);
    bn.backward_relu(ga, z, dx, &gz);

    const auto xd = to_double(x), resd = to_double(res), gad = to_double(ga);
    auto gam = to_double(bn.gamma(), 3);
    const auto bet = to_double(bn.beta(), 3);
    const std::vector<double>* rp = with_residual ? &resd : nullptr;
    auto loss_at = [&](double g1) {
      gam[1] = g1;
      return dot(gad, bn_reference(xd, s, gam, bet, rp, true));
    };
    // L is linear in γ on [0, h] for small h, so the one-sided quotient is exact.
    const double h = 1e-7;
    const double one_sided = (loss_at(h) - loss_at(0.0)) / h;
    CHECK(bn.gate_grad()[1] == doctest::Approx(one_sided).epsilon(1e-4));
    CHECK(std::abs(one_sided) > 1e-3);  // the check is not vacuous
    if (!with_residual) {
      // The ReLU is closed everywhere: autograd gives exactly 0.
      CHECK(bn.gamma_grad()[1] == 0.0f);
      CHECK(bn.beta_grad()[1] == 0.0f);
    }
  }
}

TEST_CASE("a gated channel outputs exactly 0 with zero gradients, even at zero variance") {
  rng g(seed());
  const shape4 s{3, 2, 2, 2};
  tensor x = random_tensor(s, g);
  for (int n = 0; n < 3; ++n)
    for (int i = 0; i < 4; ++i) x.plane(n, 0)[i] = 0.25f;  // channel 0: constant, variance 0
  for (const bool fused : {false, true}) {
    CAPTURE(fused);
    batch_norm bn(2);
    bn.gamma()[0] = 0.0f;
    bn.beta()[0] = 0.0f;
    tensor z, y, dx;
    if (fused) bn.forward_relu(x, nullptr, z, y, true);
    else bn.forward(x, y, true);
    for (int n = 0; n < 3; ++n)
      for (int i = 0; i < 4; ++i) {
        CHECK(y.plane(n, 0)[i] == 0.0f);
        CHECK(std::isfinite(y.plane(n, 1)[i]));
      }
    const tensor ga = random_tensor(s, g);
    if (fused) bn.backward_relu(ga, z, dx);
    else bn.backward(ga, dx);
    CHECK(std::isfinite(bn.gamma_grad()[0]));
    if (fused) {
      CHECK(bn.gamma_grad()[0] == 0.0f);
      CHECK(bn.beta_grad()[0] == 0.0f);
    }
    for (int n = 0; n < 3; ++n)
      for (int i = 0; i < 4; ++i) CHECK(dx.plane(n, 0)[i] == 0.0f);
    // Eval mode with untouched running statistics: still exactly 0.
    tensor ye, ze;
    bn.forward_relu(x, nullptr, ze, ye, false);
    for (int n = 0; n < 3; ++n) CHECK(ye.plane(n, 0)[0] == 0.0f);
  }
}

TEST_CASE("fused path: ReLU'(0) = 0 when z is exactly 0") {
  // γ = 0 and β = 0 on an ungated-looking channel with a residual that is
  // exactly 0: z == 0, so ∂L/∂z must be 0 there (PyTorch's relu).
  const shape4 s{2, 1, 1, 2};
  batch_norm bn(1);
  bn.gamma()[0] = 0.0f;
  bn.beta()[0] = 0.0f;
  tensor x(s), res(s), z, y, dx, gz;
  const float xv[] = {1.0f, -1.0f, 2.0f, 0.5f};
  std::copy(xv, xv + 4, x.data());
  res.fill(0.0f);
  bn.forward_relu(x, &res, z, y, true);
  tensor ga(s);
  ga.fill(1.0f);
  bn.backward_relu(ga, z, dx, &gz);
  for (int i = 0; i < 4; ++i) {
    CHECK(z.data()[i] == 0.0f);
    CHECK(gz.data()[i] == 0.0f);
  }
  // Gate gradient: Σ x̂ over entries with x̂ > 0 (here x > mean = 0.625).
  const double mean = 0.625, var = (0.140625 + 2.640625 + 1.890625 + 0.015625) / 4;
  const double expect = ((1.0 - mean) + (2.0 - mean)) / std::sqrt(var + 1e-5);
  CHECK(bn.gate_grad()[0] == doctest::Approx(expect).epsilon(1e-5));
}

TEST_CASE("fused path: a NaN z passes its gradient on, as PyTorch's threshold_backward") {
  // z = bn(x) + r with r NaN at one entry: relu's backward is
  // `z <= 0 ? 0 : g`, so ∂L/∂z there is g (torch.relu's gradient at NaN is 1),
  // and the channel sums count it: a diverged entry reaches ∂L/∂β instead of
  // vanishing. γ = 1, β = 0, x = {1, -1, 2, 0.5}: z > 0 exactly where x > mean.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const shape4 s{2, 1, 1, 2};
  batch_norm bn(1);
  tensor x(s), res(s), z, y, dx, gz;
  const float xv[] = {1.0f, -1.0f, 2.0f, 0.5f};
  std::copy(xv, xv + 4, x.data());
  res.fill(0.0f);
  res.data()[1] = nan;  // x[1] < mean: without the NaN this entry is closed
  bn.forward_relu(x, &res, z, y, true);
  REQUIRE(std::isnan(z.data()[1]));
  tensor ga(s);
  ga.fill(1.0f);
  bn.backward_relu(ga, z, dx, &gz);
  const float open[] = {1.0f, 1.0f, 1.0f, 0.0f};  // x > 0.625, or NaN
  for (int i = 0; i < 4; ++i) CHECK(gz.data()[i] == open[i]);
  CHECK(bn.beta_grad()[0] == 3.0f);  // Σ ∂L/∂z over the open entries and the NaN one
}

TEST_CASE("batch norm rejects a single value per channel in train mode") {
  batch_norm bn(2);
  tensor x({1, 2, 1, 1}), y;
  CHECK_THROWS_AS(bn.forward(x, y, true), std::invalid_argument);
  CHECK_NOTHROW(bn.forward(x, y, false));
}
