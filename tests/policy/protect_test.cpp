// The protector family (policy/protect/*): gradient_pulse on hand cases
// (threshold, restore caps, kept-channel protection, window, final phase,
// non-BN snapshot derivative, BN sources) and the family's conformance suite.
#include <psap/policy/protect/concept.hpp>
#include <psap/policy/protect/gradient_pulse.hpp>
#include <psap/policy/protect/none.hpp>
#include <psap/policy/reconstruct/protective.hpp>

#include <support/model.hpp>
#include <support/policy_harness.hpp>
#include <support/random_net.hpp>
#include <support/seed.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

namespace {

using psap::index;
using namespace psap_test;
using net_t = psap::network<float>;
using list = std::vector<index>;

/// One BN conv of n channels with a gate_grad view, group "g".
model_spec bn_layer(index n, bool gate = true) {
    layer_spec l{.name = "c", .out = n, .in = 2, .kernel_area = 1, .positions = 1, .bias = false, .bn = true, .gate_grad = gate};
    return {{l}, {{"g", n, {{"c", 0}}, {}}}};
}

struct pulse_case {
    model<float> m;
    harness<net_t> h;
    psap::gradient_pulse p;
    explicit pulse_case(index n) : m(bn_layer(n)), h(m.net()) { p.bind(m.net()); }
    /// One observe() with these gate gradients at iteration `since` after the last step.
    void observe(std::vector<float> gate, index since) {
        assign(m.layer("c").gate, gate);
        h.oinfo.iterations_since_step = since;
        p.observe(m.net(), h.octx());
    }
    list restores() {
        auto out = h.new_lists();
        p.restores(m.net(), h.ctx(), out);
        return out[0];
    }
    list shield(index q) {
        auto out = h.new_lists();
        const std::vector<index> counts{q};
        p.shield(m.net(), h.ctx(), counts, out);
        return out[0];
    }
};

/// 20 channels, 0..9 gated; active statistics 1 except 0.5 and 2 (median 1).
std::vector<float> base20() {
    std::vector<float> g(20, 1.0f);
    g[10] = 0.5f;
    g[19] = 2.0f;
    for (int c = 0; c < 10; ++c) g[static_cast<std::size_t>(c)] = 0.1f;
    return g;
}

TEST_CASE("gradient_pulse restores a gated channel above kappa * median(active) and not one below") {
    pulse_case t(20);
    t.h.set_pruned(0, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    auto a = base20(), b = base20();
    // mean |g| over two iterations: channel 0: (3 + 4) / 2 = 3.5 > 3; channel 1: (2.9 + 2.9) / 2 = 2.9 < 3.
    // Signs alternate: the statistic is the mean absolute value.
    a[0] = 3, b[0] = -4;
    a[1] = 2.9f, b[1] = -2.9f;
    for (std::size_t c = 10; c < 20; ++c) b[c] = -b[c];
    t.observe(a, 0);
    t.observe(b, 1);
    const auto mean = t.p.means(0);
    CHECK(mean[0] == doctest::Approx(3.5));
    CHECK(mean[1] == doctest::Approx(2.9));
    CHECK(mean[15] == doctest::Approx(1.0));
    CHECK(t.restores() == list{0});
    CHECK(t.p.pulses(0) == 1);
    t.p.kappa = 2.8;  // now both are above; the cap ceil(0.1 * 10) = 1 keeps the strongest
    CHECK(t.restores() == list{0});
    CHECK(t.p.pulses(0) == 2);
    t.p.restore = false;  // counted, not restored
    CHECK(t.restores().empty());
    CHECK(t.p.pulses(0) == 2);
}

TEST_CASE("gradient_pulse restore caps: ceil(restore_fraction * q), then min(floor(rho * q), N - q), strongest first") {
    SUBCASE("ceil(0.1 q)") {
        pulse_case t(20);
        t.h.set_pruned(0, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});  // q = 10
        auto g = base20();
        g[2] = 4, g[5] = 6, g[7] = 5;
        t.observe(g, 0);
        CHECK(t.restores() == list{5});  // cap ceil(1.0) = 1
        t.p.restore_fraction = 0.25;     // ceil(2.5) = 3
        CHECK(t.restores() == list{5, 7, 2});
        t.p.restore_fraction = 0.11;  // ceil(1.1) = 2
        CHECK(t.restores() == list{5, 7});
    }
    SUBCASE("floor(rho q)") {
        pulse_case t(20);
        t.h.set_pruned(0, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
        auto g = base20();
        for (int c = 0; c < 7; ++c) g[static_cast<std::size_t>(c)] = static_cast<float>(10 + c);  // 7 candidates
        t.observe(g, 0);
        t.p.restore_fraction = 1;
        CHECK(t.restores() == list{6, 5, 4, 3, 2});  // floor(0.5 * 10) = 5
        t.p.rho = 0.3;
        CHECK(t.restores() == list{6, 5, 4});
    }
    SUBCASE("N - q") {
        pulse_case t(12);
        t.h.set_pruned(0, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});  // q = 10, N - q = 2
        std::vector<float> g(12, 1.0f);
        for (int c = 0; c < 10; ++c) g[static_cast<std::size_t>(c)] = static_cast<float>(10 + c);
        t.observe(g, 0);
        t.p.restore_fraction = 1;
        t.p.rho = 1;
        CHECK(t.restores() == list{9, 8});
    }
    SUBCASE("ties by index") {
        pulse_case t(20);
        t.h.set_pruned(0, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
        auto g = base20();
        g[8] = g[3] = g[6] = 7;
        t.observe(g, 0);
        t.p.restore_fraction = 0.3;
        CHECK(t.restores() == list{3, 6, 8});
    }
}

TEST_CASE("gradient_pulse shields active channels above kappa_keep * median(active) within min(floor(rho q), N - q) - restored") {
    pulse_case t(20);
    t.h.set_pruned(0, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    auto g = base20();
    g[11] = 3.5f, g[12] = 8, g[13] = 5, g[14] = 4, g[15] = 6, g[16] = 2.9f;  // 16 is below kappa_keep
    t.observe(g, 0);
    // median of the active 10: values 0.5, 1, 1, 2, 2.9, 3.5, 4, 5, 6, 8 -> (2.9 + 3.5) / 2 = 3.2; 3 * 3.2 = 9.6:
    // nothing passes. Use kappa_keep = 1 (threshold 3.2): 12, 15, 13, 14, 11 pass.
    CHECK(t.shield(8).empty());
    t.p.kappa_keep = 1;
    CHECK(t.shield(8) == list{12, 15, 13, 14});  // floor(0.5 * 8) = 4
    CHECK(t.shield(10) == list{12, 15, 13, 14, 11});
    CHECK(t.shield(17) == list{12, 15, 13});  // N - q = 3
    CHECK(t.shield(0).empty());               // nothing is pruned this step
    // restores use part of the same cap and are never shielded
    t.h.restored = t.h.new_lists();
    t.h.restored[0] = {0};
    CHECK(t.shield(8) == list{12, 15, 13});
    t.p.protect = false;
    CHECK(t.shield(8).empty());
}

TEST_CASE("gradient_pulse observes only the first K iterations after a step, and starts afresh after it") {
    pulse_case t(6);
    t.p.window = 2;
    t.observe({1, 1, 1, 1, 1, 1}, 0);
    t.observe({3, 1, 1, 1, 1, 1}, 1);
    t.observe({1000, 1000, 1, 1, 1, 1}, 2);  // outside the window: ignored
    t.observe({1000, 1000, 1, 1, 1, 1}, 7);
    auto mean = t.p.means(0);
    CHECK(mean[0] == doctest::Approx(2.0));
    CHECK(mean[1] == doctest::Approx(1.0));
    t.p.after_step();
    CHECK(t.p.means(0) == std::vector<double>(6, 0.0));
    t.h.set_pruned(0, {0});
    CHECK(t.restores().empty());  // nothing observed since the step
    t.observe({9, 1, 1, 1, 1, 1}, 0);
    CHECK(t.p.means(0)[0] == doctest::Approx(9.0));
}

TEST_CASE("gradient_pulse does nothing in the final phase") {
    pulse_case t(20);
    t.h.set_pruned(0, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    auto g = base20();
    g[0] = 100;
    g[15] = 100;
    t.observe(g, 0);
    t.p.kappa_keep = 1;
    CHECK(t.restores() == list{0});
    CHECK_FALSE(t.shield(5).empty());
    t.h.info.final_phase = true;
    CHECK(t.restores().empty());
    CHECK(t.shield(5).empty());
}

TEST_CASE("gradient_pulse without batch norm: <F, dL/dF> for active filters, <snapshot, dL/dF> for zeroed ones") {
    layer_spec l{.name = "c", .out = 4, .in = 2};
    model<float> m({{l}, {{"g", 4, {{"c", 0}}, {}}}});
    auto& c = m.layer("c");
    assign(c.w, {1, 0, 0, 1, 1, 2, 1, 1});  // rows (1,0), (0,1), (1,2), (1,1)
    harness<net_t> h(m.net());
    // channels 2 and 3 are pruned (q = 2, so floor(rho q) = 1 restore is allowed): snapshots
    // (1,2) and (1,1), then zeroed as protective does for channels without BN
    const list pruned{2, 3};
    h.snapshots.save(m.net(), 0, pruned);
    h.set_pruned(0, {2, 3});
    for (std::size_t i = 4; i < 8; ++i) c.w[i] = 0;
    assign(c.gw, {1, 0, 0, -1, 3, 4, 2, -1});  // grads (1,0), (0,-1), (3,4), (2,-1)
    psap::gradient_pulse p;
    p.bind(m.net());
    p.observe(m.net(), {h.oinfo, h.groups, h.snapshots});
    const auto mean = p.means(0);
    CHECK(mean[0] == doctest::Approx(1));   // |<(1,0),(1,0)>|
    CHECK(mean[1] == doctest::Approx(1));   // |<(0,1),(0,-1)>|
    CHECK(mean[2] == doctest::Approx(11));  // <(1,2),(3,4)>, not <0, g> = 0
    CHECK(mean[3] == doctest::Approx(1));   // |<snapshot (1,1), (2,-1)>|
    auto out = h.new_lists();
    p.restores(m.net(), h.ctx(), out);
    CHECK(out[0] == list{2});
}

TEST_CASE("gradient_pulse with batch norm: gate_grad when given, else dL/dgamma; members add before the absolute value") {
    layer_spec a{.name = "a", .out = 3, .in = 1, .kernel_area = 1, .positions = 1, .bias = false, .bn = true, .gate_grad = true};
    layer_spec b = a;
    b.name = "b";
    b.gate_grad = false;
    model<float> m({{a, b}, {{"g", 3, {{"a", 0}, {"b", 0}}, {}}}});
    assign(m.layer("a").gate, {2, 1, 0});
    assign(m.layer("a").ggamma, {100, 100, 100});  // ignored: a has a gate_grad view
    assign(m.layer("b").ggamma, {-2, 1, -3});      // b has none: dL/dgamma
    harness<net_t> h(m.net());
    psap::gradient_pulse p;
    p.bind(m.net());
    p.observe(m.net(), h.octx());
    CHECK(p.means(0) == std::vector<double>{0.0, 2.0, 3.0});
    m.net().layer_at(1).bn->grad_gamma = {};
    CHECK_THROWS_WITH_AS(p.observe(m.net(), h.octx()), doctest::Contains("'b'"), psap::error);
}

// ---------------------------------------------------------------- conformance
struct pulse_protect_only : psap::gradient_pulse {
    pulse_protect_only() { restore = false; }
};
struct pulse_aggressive : psap::gradient_pulse {
    pulse_aggressive() {
        kappa = 1;
        kappa_keep = 1;
        restore_fraction = 1;
        rho = 1;
    }
};
struct pulse_no_protect : psap::gradient_pulse {
    pulse_no_protect() {
        protect = false;
        kappa = 0.5;
        restore_fraction = 0.6;
    }
};

static_assert(psap::protector_for<psap::protector_archetype, net_t>);
static_assert(psap::protector_for<psap::no_protection, net_t>);

TEST_CASE_TEMPLATE(
    "protector contract: restores only pruned channels, shields only active ones, restored + shielded <= N - q, "
    "nothing in the final phase",
    P, psap::gradient_pulse, pulse_protect_only, pulse_aggressive, pulse_no_protect, psap::no_protection,
    psap::protector_archetype) {
    int restored_total = 0, shielded_total = 0;
    for (std::uint64_t k = 0; k < 30; ++k) {
        const auto seed = psap_test::seed() + 500 + k;
        CAPTURE(seed);
        random_options o;
        o.gate_grad = k % 2 == 0;
        model<float> m(random_spec(seed, o));
        m.fill_random(seed);
        harness<net_t> h(m.net());
        rng r(seed);
        const bool final_phase = k % 5 == 4;
        for (std::size_t g = 0; g < h.groups.size(); ++g) {
            auto& st = h.groups[g];
            const double p = r.uniform(0, 0.9);
            list pruned;
            for (index c = 0; c + 1 < st.size(); ++c)
                if (r.coin(p)) pruned.push_back(c);
            h.snapshots.save(m.net(), static_cast<index>(g), pruned);  // as a reconstruction policy would
            for (index c : pruned) st.pruned[static_cast<std::size_t>(c)] = 1;
            psap::protective{}.apply(m.net(), h.ctx(), {}, h.snapshots);  // (no updates: a no-op)
        }
        P p{};
        if constexpr (requires { p.bind(m.net()); }) p.bind(m.net());
        for (index it = 0; it < 4; ++it) {
            m.fill_grads(seed, it, 1.0);
            h.oinfo.iterations_since_step = it;
            if constexpr (requires { p.observe(m.net(), h.octx()); }) p.observe(m.net(), h.octx());
        }
        h.info.final_phase = final_phase;
        auto restored = h.new_lists();
        p.restores(m.net(), h.ctx(), restored);
        std::vector<index> counts;
        for (std::size_t g = 0; g < h.groups.size(); ++g) {
            const auto& st = h.groups[g];
            std::set<index> seen;
            for (index c : restored[g]) {
                REQUIRE(c >= 0);
                REQUIRE(c < st.size());
                CHECK(st.pruned[static_cast<std::size_t>(c)] == 1);  // only pruned channels come back
                CHECK(seen.insert(c).second);
            }
            if (final_phase) CHECK(restored[g].empty());
            counts.push_back(r.between(0, st.size() - 1));
            // the pruner drops restores beyond what the quota leaves
            if (static_cast<index>(restored[g].size()) > st.size() - counts.back())
                restored[g].resize(static_cast<std::size_t>(st.size() - counts.back()));
        }
        h.restored = restored;
        auto shielded = h.new_lists();
        p.shield(m.net(), h.ctx(), counts, shielded);
        for (std::size_t g = 0; g < h.groups.size(); ++g) {
            const auto& st = h.groups[g];
            std::set<index> seen;
            for (index c : shielded[g]) {
                REQUIRE(c >= 0);
                REQUIRE(c < st.size());
                CHECK(st.pruned[static_cast<std::size_t>(c)] == 0);  // only active channels are shielded
                CHECK(std::find(restored[g].begin(), restored[g].end(), c) == restored[g].end());
                CHECK(seen.insert(c).second);
            }
            CHECK(static_cast<index>(restored[g].size() + shielded[g].size()) <= st.size() - counts[g]);
            if (final_phase) CHECK(shielded[g].empty());
            restored_total += static_cast<int>(restored[g].size());
            shielded_total += static_cast<int>(shielded[g].size());
        }
    }
    if constexpr (std::is_same_v<P, pulse_aggressive>) {
        // the aggressive settings did exercise both lists
        CHECK(restored_total > 0);
        CHECK(shielded_total > 0);
    }
}

}  // namespace
