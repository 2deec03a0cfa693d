// Checks the gate gradient of toy_model.hpp (docs/integration.md, "The gate
// gradient"): for an active channel it is dL/dgamma; for a gated channel
// (gamma = beta = 0) autograd's dL/dgamma is exactly 0 and the gate gradient
// is the one-sided derivative as gamma rises from 0, i.e. the limit of
// dL/dgamma at gamma = 0+. Finite differences of the float loss are noisy
// (ReLU kinks downstream), so they are held to a loose tolerance only.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "toy_model.hpp"

namespace {

/// Mean loss of `b` with gamma_o of conv1 set to `g` (train mode, so the
/// channel's normalisation does not depend on gamma).
double loss_at(toy::model m, const toy::batch& b, int o, float g) {
    m.c1.gamma[static_cast<std::size_t>(o)] = g;
    return m.forward_backward(b);
}

/// One-sided derivative at g0 by Richardson extrapolation of forward differences.
double one_sided(const toy::model& m, const toy::batch& b, int o, float g0, float h) {
    const double l0 = loss_at(m, b, o, g0);
    const double d1 = (loss_at(m, b, o, g0 + h) - l0) / h;
    const double d2 = (loss_at(m, b, o, g0 + h / 2) - l0) / (h / 2);
    return 2 * d2 - d1;
}

}  // namespace

TEST_CASE("an active channel's gate gradient is dL/dgamma") {
    toy::model m(8, 8, 3);
    const toy::batch b = toy::make_batch(11, 0, 16);
    m.forward_backward(b);
    for (int o = 0; o < 8; ++o) CHECK(m.c1.gate[o] == doctest::Approx(m.c1.ggamma[o]).epsilon(1e-5));
    const int o = 2;
    CHECK(m.c1.gate[o] == doctest::Approx(one_sided(m, b, o, m.c1.gamma[o], 1e-2f)).epsilon(0.1));
}

TEST_CASE("a gated channel's gate gradient is the one-sided derivative at gamma = 0+") {
    toy::model m(8, 8, 3);
    const toy::batch b = toy::make_batch(11, 0, 16);
    const int o = 5;
    m.c1.gamma[o] = m.c1.beta[o] = 0;  // what psap::protective does to a pruned channel
    m.forward_backward(b);
    CHECK(m.c1.ggamma[o] == 0.f);  // ReLU'(0) = 0: autograd sees nothing
    CHECK(m.c1.gbeta[o] == 0.f);
    CHECK(m.c1.gate[o] != 0.f);

    toy::model opened = m;  // gamma just above 0: an ordinary channel again
    opened.c1.gamma[o] = 1e-6f;
    opened.forward_backward(b);
    CHECK(m.c1.gate[o] == doctest::Approx(opened.c1.ggamma[o]).epsilon(1e-3));
    CHECK(m.c1.gate[o] == doctest::Approx(one_sided(m, b, o, 0.f, 1e-2f)).epsilon(0.1));
}
