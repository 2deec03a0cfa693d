// Layer tests: forward against naive double-precision references, backward
// against central finite differences of those references.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "nn/batch_norm.hpp"
#include "nn/conv2d.hpp"
#include "nn/cross_entropy.hpp"
#include "nn/linear.hpp"
#include "nn/pooling.hpp"
#include "nn/relu.hpp"
#include "nn/shortcut.hpp"
#include "tests/trainer_test_util.hpp"

namespace {

using namespace trainer;
using namespace trainer::test;

struct conv_case {
  int n, c, h, w, o, kh, kw, stride, pad;
  bool bias;
};

// Direct definition of cross-correlation with zero padding.
std::vector<double> conv_reference(const std::vector<double>& x, const std::vector<double>& wt,
                                   const std::vector<double>& b, const conv_case& k) {
  const int ho = (k.h + 2 * k.pad - k.kh) / k.stride + 1, wo = (k.w + 2 * k.pad - k.kw) / k.stride + 1;
  std::vector<double> y(static_cast<std::size_t>(k.n * k.o * ho * wo), 0.0);
  for (int n = 0; n < k.n; ++n)
    for (int o = 0; o < k.o; ++o)
      for (int oy = 0; oy < ho; ++oy)
        for (int ox = 0; ox < wo; ++ox) {
          double s = b.empty() ? 0.0 : b[static_cast<std::size_t>(o)];
          for (int c = 0; c < k.c; ++c)
            for (int ky = 0; ky < k.kh; ++ky)
              for (int kx = 0; kx < k.kw; ++kx) {
                const int iy = oy * k.stride - k.pad + ky, ix = ox * k.stride - k.pad + kx;
                if (iy < 0 || iy >= k.h || ix < 0 || ix >= k.w) continue;
                s += wt[static_cast<std::size_t>(((o * k.c + c) * k.kh + ky) * k.kw + kx)] *
                     x[static_cast<std::size_t>(((n * k.c + c) * k.h + iy) * k.w + ix)];
              }
          y[static_cast<std::size_t>(((n * k.o + o) * ho + oy) * wo + ox)] = s;
        }
  return y;
}

}  // namespace

TEST_CASE("conv2d forward and gradients match a double reference") {
  const conv_case cases[] = {
      {2, 3, 6, 6, 4, 3, 3, 1, 1, false}, {2, 3, 7, 5, 4, 3, 3, 2, 1, true},  {3, 4, 5, 5, 2, 1, 1, 1, 0, false},
      {2, 4, 6, 7, 3, 1, 1, 2, 0, true},  {1, 2, 7, 7, 3, 5, 5, 1, 2, false}, {2, 2, 6, 6, 3, 3, 3, 1, 0, true},
      {2, 3, 6, 5, 2, 3, 1, 1, 1, false}, {2, 2, 8, 8, 3, 2, 2, 2, 0, false}, {2, 1, 7, 7, 5, 3, 3, 2, 2, false},
      // Outputs at least 14 wide take the implicit (shifted-window) path;
      // 14 and 13 wide sit on either side of the switch.
      {2, 3, 5, 17, 10, 3, 3, 1, 1, true},  {1, 2, 4, 20, 3, 5, 5, 1, 2, false}, {2, 2, 3, 18, 3, 3, 3, 1, 0, false},
      {1, 3, 4, 16, 9, 1, 1, 1, 0, false},  {3, 2, 6, 19, 4, 3, 1, 1, 1, false}, {2, 3, 4, 14, 5, 3, 3, 1, 1, true},
      {2, 3, 4, 13, 5, 3, 3, 1, 1, false},
  };
  rng g(seed());
  for (const auto& k : cases) {
    CAPTURE(k.kh);
    CAPTURE(k.kw);
    CAPTURE(k.stride);
    CAPTURE(k.pad);
    CAPTURE(k.bias);
    conv2d conv(k.c, k.o, k.kh, k.kw, k.stride, k.pad, k.bias);
    conv.init_default(g);
    const tensor x = random_tensor({k.n, k.c, k.h, k.w}, g);
    tensor y;
    conv.forward(x, y, true);
    const auto xd = to_double(x);
    const auto wd = to_double(conv.weight(), conv.weight_size());
    const auto bd = k.bias ? to_double(conv.bias(), static_cast<std::size_t>(k.o)) : std::vector<double>{};
    const auto yref = conv_reference(xd, wd, bd, k);
    REQUIRE(y.size() == yref.size());
    CHECK(rel_error(to_double(y), yref) < 1e-6);

    // L = Σ r·y, so ∂L/∂y = r.
    const tensor r = random_tensor(y.shape(), g);
    const auto rd = to_double(r);
    tensor dx;
    conv.backward(r, &dx);
    const auto num_dx = numeric_gradient([&](const std::vector<double>& v) { return dot(rd, conv_reference(v, wd, bd, k)); }, xd);
    const auto num_dw = numeric_gradient([&](const std::vector<double>& v) { return dot(rd, conv_reference(xd, v, bd, k)); }, wd);
    CHECK(rel_error(to_double(dx), num_dx) < 1e-5);
    CHECK(rel_error(to_double(conv.weight_grad(), conv.weight_size()), num_dw) < 1e-5);
    if (k.bias) {
      const auto num_db = numeric_gradient([&](const std::vector<double>& v) { return dot(rd, conv_reference(xd, wd, v, k)); }, bd);
      CHECK(rel_error(to_double(conv.bias_grad(), static_cast<std::size_t>(k.o)), num_db) < 1e-5);
    }

    // accumulate_dx adds the input gradient to what is already there.
    tensor acc = random_tensor(x.shape(), g);
    const auto before = to_double(acc);
    conv.backward(r, &acc, true);
    std::vector<double> expect(before.size());
    for (std::size_t i = 0; i < expect.size(); ++i) expect[i] = before[i] + num_dx[i];
    CHECK(rel_error(to_double(acc), expect) < 1e-5);
  }
}

TEST_CASE("conv2d rejects mismatched inputs with a message") {
  conv2d conv(3, 4, 3, 1, 1);
  tensor x({1, 2, 5, 5}), y;
  CHECK_THROWS_AS(conv.forward(x, y, true), std::invalid_argument);
  CHECK_THROWS_AS(conv2d(0, 4, 3, 1, 1), std::invalid_argument);
  conv2d fresh(3, 4, 3, 1, 1);
  CHECK_THROWS_AS(fresh.backward(y, nullptr), std::logic_error);
}

TEST_CASE("relu: gradient at exactly 0 is 0") {
  tensor x({1, 1, 1, 5});
  const float v[] = {-1.0f, 0.0f, -0.0f, 2.0f, 1e-30f};
  std::copy(v, v + 5, x.data());
  relu r;
  tensor y, dx;
  r.forward(x, y, true);
  const float ey[] = {0.0f, 0.0f, 0.0f, 2.0f, 1e-30f};
  for (int i = 0; i < 5; ++i) CHECK(y.data()[i] == ey[i]);
  tensor dy({1, 1, 1, 5});
  dy.fill(3.0f);
  r.backward(dy, dx);
  const float edx[] = {0.0f, 0.0f, 0.0f, 3.0f, 3.0f};
  for (int i = 0; i < 5; ++i) CHECK(dx.data()[i] == edx[i]);
}

TEST_CASE("relu: NaN in gives NaN out; finite values as max(x, 0) bit for bit") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  tensor x({1, 1, 1, 6});
  const float v[] = {nan, -1.0f, -0.0f, 2.0f, inf, -inf};
  std::copy(v, v + 6, x.data());
  relu r;
  tensor y, dx;
  r.forward(x, y, true);
  CHECK(std::isnan(y.data()[0]));
  CHECK(y.data()[1] == 0.0f);
  CHECK_FALSE(std::signbit(y.data()[2]));  // -0 gives +0, as before
  CHECK(y.data()[3] == 2.0f);
  CHECK(y.data()[4] == inf);
  CHECK(y.data()[5] == 0.0f);
  // The NaN's gradient passes (PyTorch's threshold_backward), closed inputs get 0.
  tensor dy({1, 1, 1, 6});
  dy.fill(3.0f);
  r.backward(dy, dx);
  const float edx[] = {3.0f, 0.0f, 0.0f, 3.0f, 3.0f, 0.0f};
  for (int i = 0; i < 6; ++i) CHECK(dx.data()[i] == edx[i]);

  // Finite inputs: exactly the bits of `x > 0 ? x : 0`, the formula before NaN
  // propagation (results of finite runs must not move).
  rng g(seed() + 5);
  tensor big = random_tensor({2, 3, 7, 9}, g);
  for (std::size_t i = 0; i < big.size(); i += 11) big.data()[i] = (i % 2) != 0U ? 0.0f : -0.0f;
  r.forward(big, y, false);
  for (std::size_t i = 0; i < big.size(); ++i) {
    const float want = big.data()[i] > 0.0f ? big.data()[i] : 0.0f;
    CHECK(std::memcmp(&y.data()[i], &want, sizeof want) == 0);
  }
}

TEST_CASE("batch_norm's fused ReLU propagates NaN from the input and the residual") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  batch_norm bn(1);  // eval mode: running mean 0, variance 1, γ = 1, β = 0
  tensor x({1, 1, 1, 4}), res({1, 1, 1, 4}), z, y;
  const float xv[] = {nan, -1.0f, 2.0f, 0.5f};
  std::copy(xv, xv + 4, x.data());
  bn.forward_relu(x, nullptr, z, y, false);
  CHECK(std::isnan(y.data()[0]));
  CHECK(y.data()[1] == 0.0f);
  CHECK(y.data()[2] == doctest::Approx(2.0f / std::sqrt(1.0f + 1e-5f)));
  const float rv[] = {0.0f, 0.0f, nan, -1.0f};
  std::copy(rv, rv + 4, res.data());
  x.data()[0] = 1.0f;
  bn.forward_relu(x, &res, z, y, false);
  CHECK(y.data()[0] > 0.0f);
  CHECK(y.data()[1] == 0.0f);
  CHECK(std::isnan(y.data()[2]));  // from the residual branch
  CHECK(y.data()[3] == 0.0f);
}

TEST_CASE("residual add and add_into") {
  rng g(seed());
  const tensor a = random_tensor({2, 3, 2, 2}, g), b = random_tensor({2, 3, 2, 2}, g);
  tensor y;
  residual_add(a, b, y);
  tensor acc = a;
  add_into(b, acc);
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(y.data()[i] == a.data()[i] + b.data()[i]);
    CHECK(acc.data()[i] == y.data()[i]);
  }
}

TEST_CASE("option-A shortcut: channel map, subsampling and its adjoint") {
  rng g(seed());
  const std::vector<int> map{2, -1, 0, 2, 1};  // a duplicate and a zero channel
  shortcut_a sc(3, map, 2);
  const tensor x = random_tensor({2, 3, 5, 6}, g);
  tensor y;
  sc.forward(x, y);
  REQUIRE(y.shape() == shape4{2, 5, 3, 3});
  for (int n = 0; n < 2; ++n)
    for (int j = 0; j < 5; ++j)
      for (int oy = 0; oy < 3; ++oy)
        for (int ox = 0; ox < 3; ++ox) {
          const float expect = map[static_cast<std::size_t>(j)] < 0 ? 0.0f : x.plane(n, map[static_cast<std::size_t>(j)])[(2 * oy) * 6 + 2 * ox];
          CHECK(y.plane(n, j)[oy * 3 + ox] == expect);
        }
  // The shortcut is linear, so backward must be its adjoint: <dy, S x> = <Sᵀ dy, x>.
  const tensor dy = random_tensor(y.shape(), g);
  tensor dx({2, 3, 5, 6});
  dx.fill(0.0f);
  sc.backward(dy, dx);
  CHECK(dot(to_double(dy), to_double(y)) == doctest::Approx(dot(to_double(dx), to_double(x))).epsilon(1e-5));
  CHECK(shortcut_a::default_map(3, 5) == std::vector<int>{0, 1, 2, -1, -1});
  CHECK_THROWS_AS(shortcut_a(3, {0, 3}, 2), std::invalid_argument);
}

TEST_CASE("global average pool") {
  rng g(seed());
  const tensor x = random_tensor({2, 3, 3, 5}, g);
  global_avg_pool p;
  tensor y, dx;
  p.forward(x, y);
  REQUIRE(y.shape() == shape4{2, 3, 1, 1});
  for (int i = 0; i < 6; ++i) {
    double s = 0.0;
    for (int j = 0; j < 15; ++j) s += x.data()[i * 15 + j];
    CHECK(y.data()[i] == doctest::Approx(s / 15).epsilon(1e-6));
  }
  const tensor dy = random_tensor(y.shape(), g);
  p.backward(dy, dx);
  CHECK(dot(to_double(dy), to_double(y)) == doctest::Approx(dot(to_double(dx), to_double(x))).epsilon(1e-5));
}

TEST_CASE("max pool: PyTorch output sizes with ceil_mode") {
  max_pool2d ceil_pool(2, 2, true), floor_pool(2, 2, false), k3(3, 2, true);
  CHECK(ceil_pool.out_size(28) == 14);
  CHECK(ceil_pool.out_size(7) == 4);
  CHECK(ceil_pool.out_size(1) == 1);
  CHECK(floor_pool.out_size(7) == 3);
  CHECK(k3.out_size(6) == 3);  // windows start at 0, 2, 4; none starts outside
  CHECK(k3.out_size(5) == 2);
}

TEST_CASE("max pool forward picks window maxima and backward routes the gradient") {
  // Distinct values spaced by 1/64, so a 1e-3 perturbation never changes an argmax.
  rng g(seed());
  const int h = 7, w = 5;
  tensor x({2, 2, h, w});
  std::vector<int> order(x.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  for (std::size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[g.below(i + 1)]);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(order[i]) / 64.0f - 1.0f;
  max_pool2d pool(2, 2, true);
  tensor y, dx;
  pool.forward(x, y, true);
  REQUIRE(y.shape() == shape4{2, 2, 4, 3});
  auto reference = [&](const std::vector<double>& v) {
    std::vector<double> out;
    for (int p = 0; p < 4; ++p)
      for (int oy = 0; oy < 4; ++oy)
        for (int ox = 0; ox < 3; ++ox) {
          double m = -1e300;
          for (int iy = 2 * oy; iy < std::min(2 * oy + 2, h); ++iy)
            for (int ix = 2 * ox; ix < std::min(2 * ox + 2, w); ++ix) m = std::max(m, v[static_cast<std::size_t>(p * h * w + iy * w + ix)]);
          out.push_back(m);
        }
    return out;
  };
  const auto xd = to_double(x);
  CHECK(rel_error(to_double(y), reference(xd)) == 0.0);
  const tensor dy = random_tensor(y.shape(), g);
  pool.backward(dy, dx);
  const auto rd = to_double(dy);
  const auto num = numeric_gradient([&](const std::vector<double>& v) { return dot(rd, reference(v)); }, xd, 1e-3);
  CHECK(rel_error(to_double(dx), num) < 1e-6);
}

TEST_CASE("max pool ties go to the first maximum in scan order") {
  tensor x({1, 1, 2, 2});
  x.fill(1.0f);
  max_pool2d pool(2, 2, false);
  tensor y, dx;
  pool.forward(x, y, true);
  tensor dy({1, 1, 1, 1});
  dy.fill(1.0f);
  pool.backward(dy, dx);
  CHECK(dx.data()[0] == 1.0f);
  CHECK(dx.data()[1] == 0.0f);
  CHECK(dx.data()[3] == 0.0f);
}

TEST_CASE("max pool: a window holding NaN outputs NaN, its gradient goes to the last NaN (PyTorch)") {
  // torch.nn.functional.max_pool2d on [[1, nan], [3, nan]] gives nan, and
  // its backward puts the gradient on the second NaN (index 3): PyTorch's
  // CPU kernel takes a value when `val > max || isnan(val)`.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  tensor x({1, 2, 2, 2});
  const float xv[] = {1.0f, nan, 3.0f, nan, /* plane 2: NaN first, then larger values */ nan, 5.0f, 7.0f, -1.0f};
  std::copy(xv, xv + 8, x.data());
  max_pool2d pool(2, 2, false);
  tensor y, dx;
  pool.forward(x, y, true);
  REQUIRE(y.size() == 2);
  CHECK(std::isnan(y.data()[0]));
  CHECK(std::isnan(y.data()[1]));  // a NaN first in the window is not replaced by a larger value
  tensor dy({1, 2, 1, 1});
  dy.data()[0] = 2.0f, dy.data()[1] = 3.0f;
  pool.backward(dy, dx);
  const float want[] = {0.0f, 0.0f, 0.0f, 2.0f, 3.0f, 0.0f, 0.0f, 0.0f};
  for (int i = 0; i < 8; ++i) CHECK(dx.data()[i] == want[i]);
}

TEST_CASE("linear forward and gradients") {
  rng g(seed());
  const int n = 3, in = 5, out = 4;
  linear fc(in, out);
  fc.init_default(g);
  const tensor x = random_tensor({n, in, 1, 1}, g);
  tensor y, dx;
  fc.forward(x, y, true);
  const auto xd = to_double(x);
  auto reference = [&](const std::vector<double>& xv, const std::vector<double>& wv, const std::vector<double>& bv) {
    std::vector<double> r(static_cast<std::size_t>(n * out));
    for (int i = 0; i < n; ++i)
      for (int o = 0; o < out; ++o) {
        double s = bv[static_cast<std::size_t>(o)];
        for (int k = 0; k < in; ++k) s += wv[static_cast<std::size_t>(o * in + k)] * xv[static_cast<std::size_t>(i * in + k)];
        r[static_cast<std::size_t>(i * out + o)] = s;
      }
    return r;
  };
  const auto wd = to_double(fc.weight(), static_cast<std::size_t>(in * out));
  const auto bd = to_double(fc.bias(), static_cast<std::size_t>(out));
  CHECK(rel_error(to_double(y), reference(xd, wd, bd)) < 1e-6);
  const tensor dy = random_tensor(y.shape(), g);
  const auto rd = to_double(dy);
  fc.backward(dy, &dx);
  CHECK(rel_error(to_double(dx), numeric_gradient([&](const std::vector<double>& v) { return dot(rd, reference(v, wd, bd)); }, xd)) < 1e-6);
  CHECK(rel_error(to_double(fc.weight_grad(), wd.size()), numeric_gradient([&](const std::vector<double>& v) { return dot(rd, reference(xd, v, bd)); }, wd)) < 1e-6);
  CHECK(rel_error(to_double(fc.bias_grad(), bd.size()), numeric_gradient([&](const std::vector<double>& v) { return dot(rd, reference(xd, wd, v)); }, bd)) < 1e-6);
}

TEST_CASE("cross entropy: value, gradient, accuracy count") {
  const float logits[] = {1.0f, 2.0f, 0.5f, -1.0f, 0.0f, 3.0f};
  const std::int32_t labels[] = {1, 0};
  cross_entropy ce;
  const float loss = ce.forward(logits, labels, 2, 3);
  // Hand computation: mean of log(Σ e^z) − z_label.
  const double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(0.5)) - 2.0;
  const double l1 = std::log(std::exp(-1.0) + std::exp(0.0) + std::exp(3.0)) + 1.0;
  CHECK(loss == doctest::Approx((l0 + l1) / 2).epsilon(1e-6));
  CHECK(ce.correct() == 1);
  float d[6];
  ce.backward(d);
  auto f = [&](const std::vector<double>& z) {
    double s = 0.0;
    for (int i = 0; i < 2; ++i) {
      double m = 0.0;
      for (int k = 0; k < 3; ++k) m += std::exp(z[static_cast<std::size_t>(i * 3 + k)]);
      s += std::log(m) - z[static_cast<std::size_t>(i * 3 + labels[i])];
    }
    return s / 2;
  };
  CHECK(rel_error(to_double(d, 6), numeric_gradient(f, to_double(logits, 6))) < 1e-6);
  const std::int32_t bad[] = {3, 0};
  CHECK_THROWS_AS(ce.forward(logits, bad, 2, 3), std::invalid_argument);
}
