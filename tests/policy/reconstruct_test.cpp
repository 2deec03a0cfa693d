// The reconstruction family (policy/reconstruct/*): why PSAP gates at batch
// norm instead of zeroing the conv filter (a reference conv -> BN -> ReLU in
// double precision), each policy's behaviour, and the family's conformance
// suite (idempotent apply, exact restores, hard-pruned outputs held at zero).
#include <psap/policy/reconstruct/concept.hpp>
#include <psap/policy/reconstruct/decay.hpp>
#include <psap/policy/reconstruct/hard.hpp>
#include <psap/policy/reconstruct/protective.hpp>
#include <psap/policy/reconstruct/soft.hpp>

#include <support/bn_reference.hpp>
#include <support/model.hpp>
#include <support/policy_harness.hpp>
#include <support/random_net.hpp>
#include <support/seed.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace {

using psap::index;
using namespace psap_test;
using list = std::vector<index>;

// ---------------------------------------------------------------- why gate at BN
// Reference data: M positions of K inputs, an upstream gradient u, all N(0, 1).
struct bn_data {
    std::size_t M = 1024, K = 64;
    std::vector<double> x, u, w_kept;
    bn_data() {
        rng r(psap_test::seed() + 600);
        x.resize(M * K);
        u.resize(M);
        w_kept.resize(K);
        for (auto& v : x) v = r.normal();
        for (auto& v : u) v = r.normal();
        for (auto& v : w_kept) v = r.normal();
        const double n = bn_ref::norm(w_kept);
        for (auto& v : w_kept) v /= n;  // unit norm: var(z) ~ 1
    }
};

TEST_CASE("the reference conv -> BN -> ReLU backward agrees with finite differences") {
    bn_data d;
    const double gamma = 0.8, beta = 0.1, h = 1e-6;
    const auto r = bn_ref::run(d.x, d.M, d.K, d.w_kept, gamma, beta, d.u);
    for (std::size_t k = 0; k < d.K; ++k) {
        auto wp = d.w_kept, wm = d.w_kept;
        wp[k] += h;
        wm[k] -= h;
        const double fd =
            (bn_ref::run(d.x, d.M, d.K, wp, gamma, beta, d.u).loss - bn_ref::run(d.x, d.M, d.K, wm, gamma, beta, d.u).loss) /
            (2 * h);
        CHECK(r.dw[k] == doctest::Approx(fd).epsilon(1e-5));
    }
    const double fdg = (bn_ref::run(d.x, d.M, d.K, d.w_kept, gamma + h, beta, d.u).loss -
                        bn_ref::run(d.x, d.M, d.K, d.w_kept, gamma - h, beta, d.u).loss) /
                       (2 * h);
    const double fdb = (bn_ref::run(d.x, d.M, d.K, d.w_kept, gamma, beta + h, d.u).loss -
                        bn_ref::run(d.x, d.M, d.K, d.w_kept, gamma, beta - h, d.u).loss) /
                       (2 * h);
    CHECK(r.dgamma == doctest::Approx(fdg).epsilon(1e-5));
    CHECK(r.dbeta == doctest::Approx(fdb).epsilon(1e-5));
    CHECK(r.var == doctest::Approx(1.0).epsilon(0.5));  // the kept filter's pre-BN variance is O(1)
}

TEST_CASE("a zeroed conv filter in front of train-mode BN is dead (beta <= 0) or explodes (beta > 0)") {
    bn_data d;
    const std::vector<double> zero(d.K, 0.0);
    const double gamma = 1.0, eps = 1e-5;

    SUBCASE("beta <= 0: the ReLU is closed everywhere, the filter gets exactly zero gradient") {
        for (double beta : {0.0, -0.1}) {
            const auto r = bn_ref::run(d.x, d.M, d.K, zero, gamma, beta, d.u, eps);
            CHECK(r.var == 0);
            for (double a : r.a) CHECK(a == 0);
            for (double g : r.dw) CHECK(g == 0.0);
            CHECK(r.dgamma == 0.0);
            CHECK(r.dbeta == 0.0);
        }
    }
    SUBCASE("beta > 0: the gradient is (gamma / sqrt(eps)) x^T (u - mean u), ~gamma / sqrt(eps) times a kept filter's") {
        const double beta = 0.2;
        const auto r = bn_ref::run(d.x, d.M, d.K, zero, gamma, beta, d.u, eps);
        // x_hat = 0 and every ReLU is open, so dz = (gamma / sqrt(eps)) (u - mean(u)) exactly.
        double ubar = 0;
        for (double v : d.u) ubar += v;
        ubar /= double(d.M);
        std::vector<double> centred(d.K, 0.0);
        for (std::size_t p = 0; p < d.M; ++p)
            for (std::size_t k = 0; k < d.K; ++k) centred[k] += d.x[p * d.K + k] * (d.u[p] - ubar);
        for (std::size_t k = 0; k < d.K; ++k)
            CHECK(r.dw[k] == doctest::Approx(gamma / std::sqrt(eps) * centred[k]).epsilon(1e-9));

        // A kept filter gets dz = (gamma / sigma) P(u * open), sigma = sqrt(var(z) + eps) ~ 1 and P
        // removing the mean and the x_hat direction. With about half of the ReLUs open,
        // ||x^T P(u * open)|| ~ ||x^T (u - mean u)|| / sqrt(2), so the ratio of the two filter
        // gradients is ~ sqrt(2) sigma gamma / sqrt(eps). Norms of x^T v over K = 64 inputs
        // fluctuate by ~10%, so we accept a factor 2 around sqrt(2) gamma / sqrt(eps) ~ 447.
        const auto kept = bn_ref::run(d.x, d.M, d.K, d.w_kept, gamma, beta, d.u, eps);
        const double ratio = bn_ref::norm(r.dw) / bn_ref::norm(kept.dw);
        const double expected = std::sqrt(2.0) * std::sqrt(kept.var + eps) * gamma / std::sqrt(eps);
        CAPTURE(ratio);
        CAPTURE(expected);
        CHECK(ratio > expected / 2);
        CHECK(ratio < expected * 2);
        CHECK(ratio > 100);  // orders of magnitude, as measured in the prototype (~10^3 with its gamma)
    }
}

TEST_CASE("the gated path (gamma = beta = 0 via psap::protective): output exactly 0, finite gradients, filter preserved") {
    bn_data d;
    const auto C = static_cast<index>(3), K = static_cast<index>(d.K);
    layer_spec l{
        .name = "conv", .out = C, .in = K, .kernel_area = 1, .positions = static_cast<index>(d.M), .bias = false, .bn = true};
    model<double> m({{l}, {{"conv", C, {{"conv", 0}}, {}}}});
    auto& ol = m.layer("conv");
    rng r(psap_test::seed() + 601);
    for (auto& v : ol.w) v = r.normal() / std::sqrt(double(K));
    assign(ol.gamma, {0.9, 1.1, 0.7});
    assign(ol.beta, {0.1, 0.3, -0.2});  // channel 1 has beta > 0: zeroing its filter would explode it
    const std::vector<double> filter1(ol.w.begin() + K, ol.w.begin() + 2 * K);

    harness<psap::network<double>> h(m.net());
    psap::protective p;
    std::vector<psap::group_update> up(1);
    up[0].pruned = up[0].newly_pruned = {1};
    p.apply(m.net(), h.ctx(), up, h.snapshots);
    CHECK(ol.gamma[1] == 0.0);
    CHECK(ol.beta[1] == 0.0);
    CHECK(std::memcmp(ol.w.data() + K, filter1.data(), filter1.size() * sizeof(double)) == 0);
    CHECK(ol.gamma[0] == 0.9);  // other channels untouched
    CHECK(ol.beta[2] == -0.2);

    auto gated = bn_ref::run(d.x, d.M, d.K, filter1, ol.gamma[1], ol.beta[1], d.u);
    for (double a : gated.a) CHECK(a == 0.0);  // ReLU(0 * x_hat + 0) = 0: the residual add receives 0
    CHECK(gated.var > 0.1);                    // the filter still computes; its statistics stay sane
    for (double g : gated.dw) {
        CHECK(std::isfinite(g));
        CHECK(g == 0.0);
    }
    CHECK(gated.dgamma == 0.0);  // ReLU'(0) = 0: dL/dgamma itself carries no signal ...
    // ... so the gate gradient is the one-sided derivative as gamma rises from 0, and it is finite
    // and equal to (L(gamma = t) - L(0)) / t (L is linear in gamma for gamma in (0, t] when beta = 0)
    CHECK(std::isfinite(gated.gate_grad));
    CHECK(gated.gate_grad != 0.0);
    const double t = 1e-6;
    const double fd = (bn_ref::run(d.x, d.M, d.K, filter1, t, 0.0, d.u).loss - gated.loss) / t;
    CHECK(gated.gate_grad == doctest::Approx(fd).epsilon(1e-8));

    // An optimizer step moves the gated BN (momentum) and decays the filter (weight decay);
    // after_update puts the gate back to 0 and the filter back to its snapshot.
    ol.gamma[1] = 0.05;
    ol.beta[1] = 0.02;
    for (index k = 0; k < K; ++k) ol.w[static_cast<std::size_t>(K + k)] *= 0.999;
    h.set_pruned(0, {1});
    p.after_update(m.net(), h.groups, h.snapshots);
    CHECK(ol.gamma[1] == 0.0);
    CHECK(ol.beta[1] == 0.0);
    CHECK(std::memcmp(ol.w.data() + K, filter1.data(), filter1.size() * sizeof(double)) == 0);
    gated = bn_ref::run(d.x, d.M, d.K, filter1, ol.gamma[1], ol.beta[1], d.u);
    for (double a : gated.a) CHECK(a == 0.0);

    // Restored, the channel is exactly what it was: gamma 1.1, beta 0.3, the same filter.
    up[0] = {};
    up[0].restored = {1};
    p.apply(m.net(), h.ctx(), up, h.snapshots);
    CHECK(ol.gamma[1] == 1.1);
    CHECK(ol.beta[1] == 0.3);
    CHECK(std::memcmp(ol.w.data() + K, filter1.data(), filter1.size() * sizeof(double)) == 0);
}

// ---------------------------------------------------------------- each policy
/// Two groups: "bn" (conv with bias and BN, 4 channels) and "plain" (conv with bias, 4 channels).
model_spec two_groups() {
    layer_spec a{.name = "a", .out = 4, .in = 2, .kernel_area = 1, .positions = 1, .bias = true, .bn = true};
    layer_spec b{.name = "b", .out = 4, .in = 2, .kernel_area = 1, .positions = 1, .bias = true, .bn = false};
    return {{a, b}, {{"bn", 4, {{"a", 0}}, {}}, {"plain", 4, {{"b", 0}}, {}}}};
}
std::vector<psap::group_update> prune_channel_1() {
    std::vector<psap::group_update> up(2);
    for (auto& u : up) u.pruned = u.newly_pruned = {1};
    return up;
}
bool row_is(owned_layer<float>& l, index f, float v) {
    for (index j = 0; j < l.fan_in(); ++j)
        if (l.weight(f, j) != v) return false;
    return true;
}

TEST_CASE("protective gates BN channels and zeroes the rest; hold_filters keeps the gated filter at its snapshot") {
    model<float> m(two_groups());
    m.fill_random(psap_test::seed());
    model<float> orig(two_groups());
    orig.copy_from(m);
    harness<psap::network<float>> h(m.net());
    auto& a = m.layer("a");
    auto& b = m.layer("b");
    psap::protective p;
    p.apply(m.net(), h.ctx(), prune_channel_1(), h.snapshots);
    CHECK(a.gamma[1] == 0);
    CHECK(a.beta[1] == 0);
    CHECK(a.w == orig.layer("a").w);  // filter and bias of a gated channel untouched
    CHECK(a.b == orig.layer("a").b);
    CHECK(row_is(b, 1, 0));
    CHECK(b.b[1] == 0);
    CHECK(b.weight(0, 0) == orig.layer("b").weight(0, 0));
    h.set_pruned(0, {1});
    h.set_pruned(1, {1});
    m.fill_grads(1, 0, 0.1);
    m.sgd(1.0);
    p.after_update(m.net(), h.groups, h.snapshots);
    CHECK(a.gamma[1] == 0);
    CHECK(a.beta[1] == 0);
    CHECK(row_is(b, 1, 0));
    CHECK(b.b[1] == 0);
    for (index j = 0; j < a.fan_in(); ++j) CHECK(a.weight(1, j) == orig.layer("a").weight(1, j));
    CHECK(a.weight(0, 0) != orig.layer("a").weight(0, 0));  // active channels train
    p.hold_filters = false;
    m.sgd(1.0);
    p.after_update(m.net(), h.groups, h.snapshots);
    CHECK(a.weight(1, 0) != orig.layer("a").weight(1, 0));  // not held: the gated filter trains on
}

TEST_CASE("soft zeroes filters and biases only, lets them regrow, and masks gradients when asked") {
    model<float> m(two_groups());
    m.fill_random(psap_test::seed());
    model<float> orig(two_groups());
    orig.copy_from(m);
    harness<psap::network<float>> h(m.net());
    auto& a = m.layer("a");
    psap::soft s;
    s.apply(m.net(), h.ctx(), prune_channel_1(), h.snapshots);
    CHECK(row_is(a, 1, 0));
    CHECK(a.b[1] == 0);
    CHECK(a.gamma == orig.layer("a").gamma);  // BN untouched (SFP)
    CHECK(a.beta == orig.layer("a").beta);
    h.set_pruned(0, {1});
    h.set_pruned(1, {1});
    m.fill_grads(2, 0, 0.1);
    s.mask_gradients_of(m.net(), h.groups);  // off by default
    CHECK(a.grad(1, 0) != 0);
    s.mask_gradients = true;
    s.mask_gradients_of(m.net(), h.groups);
    for (index j = 0; j < a.fan_in(); ++j) CHECK(a.grad(1, j) == 0);
    CHECK(a.gb[1] == 0);
    CHECK(a.ggamma[1] != 0);  // BN gradients are not masked
    m.fill_grads(2, 1, 0.1);
    m.sgd(1.0);
    s.after_update(m.net(), h.groups, h.snapshots);
    CHECK_FALSE(row_is(a, 1, 0));  // regrown
}

TEST_CASE("hard zeroes filter, bias, gamma and beta, masks every gradient and re-zeroes after each update") {
    model<float> m(two_groups());
    m.fill_random(psap_test::seed());
    harness<psap::network<float>> h(m.net());
    auto& a = m.layer("a");
    psap::hard hd;
    hd.apply(m.net(), h.ctx(), prune_channel_1(), h.snapshots);
    CHECK(row_is(a, 1, 0));
    CHECK(a.b[1] == 0);
    CHECK(a.gamma[1] == 0);
    CHECK(a.beta[1] == 0);
    h.set_pruned(0, {1});
    h.set_pruned(1, {1});
    m.fill_grads(3, 0, 0.1);
    hd.mask_gradients_of(m.net(), h.groups);
    for (index j = 0; j < a.fan_in(); ++j) CHECK(a.grad(1, j) == 0);
    CHECK(a.gb[1] == 0);
    CHECK(a.ggamma[1] == 0);
    CHECK(a.gbeta[1] == 0);
    CHECK(a.ggamma[0] != 0);
}

TEST_CASE("decay shrinks pruned channels by `factor` after each update and finish() zeroes them") {
    model<float> m(two_groups());
    m.fill_random(psap_test::seed());
    model<float> orig(two_groups());
    orig.copy_from(m);
    harness<psap::network<float>> h(m.net());
    auto& a = m.layer("a");
    auto& b = m.layer("b");
    psap::decay dc;  // 0.9
    dc.apply(m.net(), h.ctx(), prune_channel_1(), h.snapshots);
    CHECK(a.gamma == orig.layer("a").gamma);  // nothing cut at once
    h.set_pruned(0, {1});
    h.set_pruned(1, {1});
    dc.after_update(m.net(), h.groups, h.snapshots);
    dc.after_update(m.net(), h.groups, h.snapshots);
    CHECK(a.gamma[1] == orig.layer("a").gamma[1] * 0.9f * 0.9f);  // BN group: gamma and beta decay
    CHECK(a.beta[1] == orig.layer("a").beta[1] * 0.9f * 0.9f);
    CHECK(a.weight(1, 0) == orig.layer("a").weight(1, 0));
    CHECK(b.weight(1, 1) == orig.layer("b").weight(1, 1) * 0.9f * 0.9f);  // plain group: filter and bias
    CHECK(b.b[1] == orig.layer("b").b[1] * 0.9f * 0.9f);
    CHECK(a.gamma[0] == orig.layer("a").gamma[0]);
    dc.finish(m.net(), h.groups, h.snapshots);
    CHECK(a.gamma[1] == 0);
    CHECK(a.beta[1] == 0);
    CHECK(row_is(b, 1, 0));
    dc.factor = 1;
    CHECK_THROWS_WITH_AS(dc.apply(m.net(), h.ctx(), prune_channel_1(), h.snapshots), doctest::Contains("factor 1"), psap::error);
}

// ---------------------------------------------------------------- conformance
struct protective_no_hold : psap::protective {
    protective_no_hold() { hold_filters = false; }
};
struct soft_masked : psap::soft {
    soft_masked() { mask_gradients = true; }
};
struct decay_fast : psap::decay {
    decay_fast() { factor = 0.5; }
};

/// Policies whose pruned channels output exactly zero (and keep doing so across after_update).
template <class R>
constexpr bool outputs_zero = std::is_base_of_v<psap::hard, R> || std::is_base_of_v<psap::protective, R>;
/// Policies that restore a channel's BN gamma/beta from the snapshot (soft never touches BN).
template <class R>
constexpr bool restores_bn = !std::is_base_of_v<psap::soft, R> && !std::is_same_v<R, psap::reconstructor_archetype>;

static_assert(psap::reconstructor_for<psap::reconstructor_archetype, psap::network<float>>);

template <class R>
void check_outputs_zero(model<float>& m, const std::vector<psap::group_state>& groups) {
    const auto& net = m.net();
    for (std::size_t g = 0; g < groups.size(); ++g)
        for (std::size_t mi = 0; mi < net.groups()[g].members.size(); ++mi) {
            const auto mv = psap::member_of(net, static_cast<index>(g), mi);
            for (index c = 0; c < groups[g].size(); ++c) {
                if (!groups[g].pruned[static_cast<std::size_t>(c)]) continue;
                CAPTURE(c);
                if (mv.bn) {  // gated: gamma = beta = 0 (hard also zeroes the filter)
                    CHECK(mv.bn->gamma[c] == 0);
                    CHECK(mv.bn->beta[c] == 0);
                    if constexpr (std::is_base_of_v<psap::hard, R>)
                        for (index j = 0; j < mv.weight.cols(); ++j) CHECK(mv.weight(c, j) == 0);
                } else {  // zeroed filter and bias
                    for (index j = 0; j < mv.weight.cols(); ++j) CHECK(mv.weight(c, j) == 0);
                    if (!mv.bias.empty()) CHECK(mv.bias[c] == 0);
                }
            }
        }
}

TEST_CASE_TEMPLATE("reconstruction contract: apply() idempotent without changes, restores exact, hard-pruned outputs stay zero",
                   R, psap::protective, protective_no_hold, psap::soft, soft_masked, psap::hard, psap::decay, decay_fast,
                   psap::reconstructor_archetype) {
    for (std::uint64_t k = 0; k < 12; ++k) {
        const auto seed = psap_test::seed() + 700 + k;
        CAPTURE(seed);
        const auto spec = random_spec(seed);
        model<float> m(spec), orig(spec), after(spec);
        m.fill_random(seed);
        orig.copy_from(m);
        harness<psap::network<float>> h(m.net());
        rng r(seed);
        R rec{};
        const std::size_t n = h.groups.size();

        // step 1: prune a random set per group
        std::vector<psap::group_update> up(n);
        for (std::size_t g = 0; g < n; ++g) {
            for (index c = 0; c + 1 < h.groups[g].size(); ++c)
                if (r.coin(0.4)) up[g].pruned.push_back(c);
            up[g].newly_pruned = up[g].pruned;
        }
        rec.apply(m.net(), h.ctx(), up, h.snapshots);
        for (std::size_t g = 0; g < n; ++g)
            for (index c : up[g].pruned) h.groups[g].pruned[static_cast<std::size_t>(c)] = 1;
        after.copy_from(m);

        // apply() with no changes leaves the network as it is
        std::vector<psap::group_update> same(n);
        for (std::size_t g = 0; g < n; ++g) same[g].pruned = up[g].pruned;
        rec.apply(m.net(), h.ctx(), same, h.snapshots);
        CHECK(m.same_values(after));
        if constexpr (outputs_zero<R>) check_outputs_zero<R>(m, h.groups);

        // two optimizer steps; the pruned outputs stay zero across after_update
        for (index it = 0; it < 2; ++it) {
            m.fill_grads(seed, it, 0.1);
            if constexpr (requires { rec.mask_gradients_of(m.net(), std::span<const psap::group_state>(h.groups)); })
                rec.mask_gradients_of(m.net(), std::span<const psap::group_state>(h.groups));
            m.sgd(1.0);
            rec.after_update(m.net(), h.groups, h.snapshots);
            if constexpr (outputs_zero<R>) check_outputs_zero<R>(m, h.groups);
        }

        // step 2: restore some pruned channels, release others, keep the rest
        std::vector<psap::group_update> up2(n);
        for (std::size_t g = 0; g < n; ++g)
            for (index c : up[g].pruned) {
                const double x = r.uniform();
                (x < 0.3 ? up2[g].restored : x < 0.5 ? up2[g].released : up2[g].pruned).push_back(c);
            }
        rec.apply(m.net(), h.ctx(), up2, h.snapshots);
        const auto& net = m.net();
        for (std::size_t g = 0; g < n; ++g)
            for (std::size_t mi = 0; mi < net.groups()[g].members.size(); ++mi) {
                const auto mv = psap::member_of(net, static_cast<index>(g), mi);
                const auto ov = psap::member_of(orig.net(), static_cast<index>(g), mi);
                for (index c : up2[g].restored) {
                    if (!h.snapshots.has(static_cast<index>(g), c)) continue;  // the archetype keeps no snapshots
                    CAPTURE(c);
                    // the snapshot was taken at step 1, before any training: the original values
                    for (index j = 0; j < mv.weight.cols(); ++j) CHECK(mv.weight(c, j) == ov.weight(c, j));
                    if (!mv.bias.empty()) CHECK(mv.bias[c] == ov.bias[c]);
                    if (mv.bn && restores_bn<R>) {
                        CHECK(mv.bn->gamma[c] == ov.bn->gamma[c]);
                        CHECK(mv.bn->beta[c] == ov.bn->beta[c]);
                    }
                }
            }
        for (auto& st : h.groups) std::fill(st.pruned.begin(), st.pruned.end(), std::uint8_t{0});
        for (std::size_t g = 0; g < n; ++g)
            for (index c : up2[g].pruned) h.groups[g].pruned[static_cast<std::size_t>(c)] = 1;
        if constexpr (outputs_zero<R>) check_outputs_zero<R>(m, h.groups);
    }
}

}  // namespace

TEST_CASE("channel lists from bit masks: bits_where, append_bits, append_nonzero and append_zero list what a loop over the bytes lists") {
    // The pruner's selection and the reconstruction's pruned lists are read
    // 64 channels at a time from byte masks; any byte value, any length.
    const auto seed = psap_test::seed() + 31;
    CAPTURE(seed);
    std::mt19937_64 g(seed);
    for (int trial = 0; trial < 400; ++trial) {
        const std::size_t n = g() % 200;
        std::vector<std::uint8_t> bytes(n);
        for (auto& b : bytes) b = g() % 3 == 0 ? static_cast<std::uint8_t>(g()) : 0;  // sparse, any value
        const auto mask = static_cast<std::uint8_t>(trial % 4 == 0 ? 0xff : 1u << (g() % 8));
        const auto base = static_cast<psap::index>(g() % 1000);
        list by_loop, by_bits, nonzero, by_mask = {-1};  // by_mask: appended after what is there
        for (std::size_t i = 0; i < n; ++i)
            if (bytes[i] != 0) by_loop.push_back(static_cast<psap::index>(i));
        psap::detail::append_nonzero(bytes.data(), n, nonzero);
        CHECK(nonzero == by_loop);
        list zero, zero_by_loop;
        for (std::size_t i = 0; i < n; ++i)
            if (bytes[i] == 0) zero_by_loop.push_back(static_cast<psap::index>(i));
        psap::detail::append_zero(bytes.data(), n, zero);
        CHECK(zero == zero_by_loop);
        list expect = {-1};
        for (std::size_t c0 = 0; c0 < n; c0 += 64) {
            const std::size_t len = std::min<std::size_t>(64, n - c0);
            const std::uint64_t m = psap::detail::bits_where(bytes.data() + c0, len, mask);
            for (std::size_t j = 0; j < 64; ++j) {
                const bool want = j < len && (bytes[c0 + j] & mask) != 0;
                CHECK(((m >> j) & 1) == static_cast<std::uint64_t>(want));
                if (want) expect.push_back(base + static_cast<psap::index>(c0 + j));
            }
            psap::detail::append_bits(m, base + static_cast<psap::index>(c0), by_mask);
        }
        CHECK(by_mask == expect);
    }
}
