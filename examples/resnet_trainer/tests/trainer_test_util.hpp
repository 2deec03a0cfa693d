#pragma once
// Shared helpers of the trainer tests: seeded random tensors, central finite
// differences on double-precision reference functions, error norms.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/rng.hpp"
#include "nn/tensor.hpp"

namespace trainer::test {

/// TRAINER_TEST_SEED overrides the default; the seed in use is printed so a
/// failure can be replayed.
inline std::uint64_t seed(std::uint64_t fallback = 20240601) {
  static const std::uint64_t s = [&] {
    const char* env = std::getenv("TRAINER_TEST_SEED");
    const std::uint64_t v = env != nullptr ? std::strtoull(env, nullptr, 10) : fallback;
    std::printf("trainer tests: seed %llu (set TRAINER_TEST_SEED to change)\n", static_cast<unsigned long long>(v));
    return v;
  }();
  return s;
}

inline tensor random_tensor(shape4 s, rng& g, double scale = 1.0) {
  tensor t(s);
  for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<float>(scale * g.normal());
  return t;
}

inline std::vector<double> to_double(const float* p, std::size_t n) { return std::vector<double>(p, p + n); }
inline std::vector<double> to_double(const tensor& t) { return to_double(t.data(), t.size()); }

/// ∂f/∂x by central differences in double precision.
inline std::vector<double> numeric_gradient(const std::function<double(const std::vector<double>&)>& f,
                                            std::vector<double> x, double h = 1e-6) {
  std::vector<double> g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = f(x);
    x[i] = keep - h;
    const double down = f(x);
    x[i] = keep;
    g[i] = (up - down) / (2.0 * h);
  }
  return g;
}

/// ‖a − b‖ / max(‖b‖, floor): one number per tensor, insensitive to single
/// tiny entries.
inline double rel_error(const std::vector<double>& a, const std::vector<double>& b, double floor = 1e-12) {
  REQUIRE(a.size() == b.size());
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), floor);
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace trainer::test
