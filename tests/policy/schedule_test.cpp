// The schedule family (policy/schedule/*): uniform against a brute-force scan
// of ratios, the ramps' formulas, PSAP's adaptive_sparsity on hand cases (leaky
// control, first step, rate limit, p_min/p_max, proportional and uniform rules,
// channel and element sparsity) and its monotonicity, global_threshold, and the
// family's conformance suite.
#include <psap/policy/criterion/lp_norm.hpp>
#include <psap/policy/schedule/adaptive_sparsity.hpp>
#include <psap/policy/schedule/agp.hpp>
#include <psap/policy/schedule/asymptotic.hpp>
#include <psap/policy/schedule/concept.hpp>
#include <psap/policy/schedule/global_threshold.hpp>
#include <psap/policy/schedule/uniform.hpp>

#include <support/model.hpp>
#include <support/policy_harness.hpp>
#include <support/random_net.hpp>
#include <support/resnet.hpp>
#include <support/seed.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

namespace {

using psap::budget_kind;
using psap::index;
using namespace psap_test;
using net_t = psap::network<float>;

/// Standalone BN convs (1 input, 1x1, no consumers): the filters budget is then
/// just the number of pruned channels.
model_spec bank(std::vector<index> sizes, bool bn = true) {
    model_spec s;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        const std::string n = str("c", i + 1), g = str("g", i + 1);
        s.layers.push_back({.name = n, .out = sizes[i], .in = 1, .kernel_area = 1, .positions = 1, .bias = false, .bn = bn});
        s.groups.push_back({g, sizes[i], {{n, 0}}, {}});
    }
    return s;
}

/// Pruned count of ratio k/n applied to a group of size `size`, exactly: floor(k*size/n),
/// at most floor(p_max*size) (p_max = pmax_num/100), kept rounded up to `multiple`, >= 1 kept.
index exact_count(index k, index n, index size, index pmax_num, index multiple) {
    index q = std::min(k * size / n, pmax_num * size / 100);
    index kept = size - q;
    if (multiple > 1) kept = std::min(size, (kept + multiple - 1) / multiple * multiple);
    kept = std::max<index>(kept, 1);
    return size - kept;
}

TEST_CASE("uniform: the smallest common ratio meeting the budget, checked by scanning every breakpoint") {
    for (std::uint64_t k = 0; k < 24; ++k) {
        const auto seed = psap_test::seed() + 200 + k;
        CAPTURE(seed);
        model<float> m(random_spec(seed));
        rng r(seed);
        const budget_kind kind = std::array{budget_kind::flops, budget_kind::params, budget_kind::filters}[k % 3];
        const double target = r.uniform(0.05, 0.6);
        const index multiple = k % 4 == 3 ? 4 : 1;
        CAPTURE(target);
        CAPTURE(multiple);
        harness<net_t> h(m.net(), {kind, target});
        h.keep_multiple = multiple;
        psap::uniform u;  // p_max = 0.95
        const auto sizes = h.costs.group_sizes();
        const double limit = static_cast<double>(h.costs.full().of(kind)) * (1 - target);

        // Counts change only at ratios k/N_g: scan them all in increasing order.
        std::vector<std::pair<index, index>> ratios;  // (k, n) for k/n
        for (index n : sizes)
            for (index kk = 0; kk <= n; ++kk) ratios.emplace_back(kk, n);
        std::sort(ratios.begin(), ratios.end(), [](auto a, auto b) { return a.first * b.second < b.first * a.second; });
        std::vector<index> best;
        double best_ratio = -1;
        for (auto [kk, n] : ratios) {
            std::vector<index> q(sizes.size()), kept(sizes.size());
            for (std::size_t g = 0; g < sizes.size(); ++g) {
                q[g] = exact_count(kk, n, sizes[g], 95, multiple);
                kept[g] = sizes[g] - q[g];
            }
            if (static_cast<double>(h.costs.evaluate(kept).of(kind)) <= limit) {
                best = q;
                best_ratio = double(kk) / double(n);
                break;
            }
        }
        auto plan = h.new_plan();
        if (best.empty()) {
            CHECK_THROWS_AS(u.plan(m.net(), h.ctx(), plan), psap::error);
            continue;
        }
        u.plan(m.net(), h.ctx(), plan);
        CHECK(plan.budget_now == target);
        CHECK(plan.count == best);
        if (plan.count != best) {
            for (std::size_t g = 0; g < sizes.size(); ++g)
                MESSAGE("g", g, " N=", sizes[g], " lib=", plan.count[g], " ref=", best[g], " ratio=", plan.ratio[g],
                        " ref_ratio=", best_ratio);
        }
        for (std::size_t g = 0; g < sizes.size(); ++g)
            CHECK(plan.ratio[g] == doctest::Approx(std::min(best_ratio, 0.95)).epsilon(1e-8));
    }
}

/// The textbook bisection allocate() must reproduce: every group's count
/// recomputed at every midpoint, the cost evaluated whenever the counts differ
/// from both ends.
psap::allocation bisect_every_group(const psap::cost_model& costs, budget_kind kind, double target, const std::vector<double>& d,
                                    const std::vector<double>& lo, const std::vector<double>& hi, index multiple) {
    const auto sizes = costs.group_sizes();
    const std::size_t n = sizes.size();
    const double limit = static_cast<double>(costs.full().of(kind)) * (1.0 - target);
    auto counts = [&](double mu) {
        std::vector<index> c(n);
        for (std::size_t g = 0; g < n; ++g) c[g] = psap::pruned_count(std::clamp(d[g] + mu, lo[g], hi[g]), sizes[g], multiple);
        return c;
    };
    auto meets = [&](const std::vector<index>& c) {
        std::vector<index> kept(n);
        for (std::size_t g = 0; g < n; ++g) kept[g] = sizes[g] - c[g];
        return static_cast<double>(costs.evaluate(kept).of(kind)) <= limit;
    };
    psap::allocation a;
    double mu_lo = -1.0 - *std::max_element(d.begin(), d.end()), mu_hi = 1.0 - *std::min_element(d.begin(), d.end());
    mu_lo = std::min(mu_lo, -1.0), mu_hi = std::max(mu_hi, 1.0);
    if (meets(counts(mu_lo))) {
        a.mu = mu_lo;
    } else if (!meets(counts(mu_hi))) {
        a.mu = mu_hi;
        a.feasible = false;
    } else {
        for (int it = 0; it < 64 && mu_hi - mu_lo > 1e-12; ++it) {
            const double mid = 0.5 * (mu_lo + mu_hi);
            (meets(counts(mid)) ? mu_hi : mu_lo) = mid;
        }
        a.mu = mu_hi;
    }
    a.count = counts(a.mu);
    return a;
}

/// A desired ratio around a rate-limited previous ratio, as adaptive_sparsity forms them.
void random_window(rng& r, std::vector<double>& d, std::vector<double>& lo, std::vector<double>& hi, std::size_t g) {
    const double prev = r.uniform(0.0, 0.8);
    d[g] = prev + r.uniform(-0.3, 0.3);
    lo[g] = std::max(0.0, prev - 0.1);
    hi[g] = std::min(0.8, prev + 0.1);
}

/// allocate() against bisect_every_group() on one case: the same midpoints, bit for bit.
void check_against_reference(const psap::cost_model& costs, std::uint64_t k, rng& r, double max_target, index multiple,
                             const std::vector<double>& d, const std::vector<double>& lo, const std::vector<double>& hi) {
    const budget_kind kind = std::array{budget_kind::flops, budget_kind::params, budget_kind::filters}[k % 3];
    const double target = r.uniform(0.02, max_target);
    CAPTURE(target);
    CAPTURE(multiple);
    const auto got = psap::allocate(costs, kind, target, d, lo, hi, multiple);
    const auto want = bisect_every_group(costs, kind, target, d, lo, hi, multiple);
    CHECK(got.feasible == want.feasible);
    CHECK(got.mu == want.mu);
    CHECK(got.count == want.count);
}

TEST_CASE("allocate: the same mu and counts as a bisection that recomputes every group at every midpoint") {
    for (std::uint64_t k = 0; k < 60; ++k) {
        const auto seed = psap_test::seed() + 700 + k;
        CAPTURE(seed);
        model<float> m(random_spec(seed));
        rng r(seed);
        const psap::cost_model costs(m.net());
        const std::size_t n = costs.group_count();
        std::vector<double> d(n), lo(n), hi(n);
        for (std::size_t g = 0; g < n; ++g) random_window(r, d, lo, hi, g);
        check_against_reference(costs, k, r, 0.7, k % 5 == 4 ? 4 : 1, d, lo, hi);
    }
}

TEST_CASE("allocate: runs of equal groups (ResNet-56 stages, a uniform solve) give the reference bisection's mu and counts") {
    // allocate() evaluates one group of each run of consecutive groups with
    // equal desired ratio, bounds and size; the reference evaluates all.
    model<float> m(cifar_resnet({.n = 9}));
    const psap::cost_model costs(m.net());
    const std::size_t n = costs.group_count();
    REQUIRE(n == 27);
    for (std::uint64_t k = 0; k < 90; ++k) {
        const auto seed = psap_test::seed() + 900 + k;
        CAPTURE(seed);
        rng r(seed);
        // pattern 0: a uniform solve (d = 0, one window); 1: one ratio and
        // window per stage; 2: runs of random length
        const std::uint64_t pattern = (k / 3) % 3;
        std::vector<double> d(n, 0.0), lo(n, 0.0), hi(n, 0.8);
        for (std::size_t g = 0; pattern != 0 && g < n; ++g) {
            if (g > 0 && (pattern == 1 ? g % 9 != 0 : r.uniform() >= 0.3))
                d[g] = d[g - 1], lo[g] = lo[g - 1], hi[g] = hi[g - 1];
            else
                random_window(r, d, lo, hi, g);
        }
        check_against_reference(costs, k, r, 0.75, k % 5 == 4 ? 8 : 1, d, lo, hi);
    }
}

TEST_CASE("uniform with a fixed ratio prunes floor(p * N) everywhere and reports what that removes") {
    model<float> m(bank({10, 16, 7}));
    harness<net_t> h(m.net(), {budget_kind::filters, 0.5});
    psap::uniform u{.fixed_ratio = 0.3};
    auto plan = h.new_plan();
    u.plan(m.net(), h.ctx(), plan);
    CHECK(plan.count == std::vector<index>{3, 4, 2});  // floor(3.0), floor(4.8), floor(2.1)
    CHECK(plan.budget_now == doctest::Approx(9.0 / 33.0));
    u.fixed_ratio = 1.0;
    CHECK_THROWS_WITH_AS(u.plan(m.net(), h.ctx(), plan), doctest::Contains("fixed_ratio 1"), psap::error);
}

TEST_CASE("ramps: asymptotic reaches 3/4 of B at 1/8 of the ramp, cubic is AGP's 1 - (1 - x)^3, linear is x") {
    using psap::ramp_fraction;
    using psap::ramp_shape;
    // ASFP (baselines.md §3.2): P_t = P (1 - 4^(-8t/T)), forced to P at T. At t = T/8 that is
    // 3/4 up to the normalisation 1 / (1 - 4^-8) = 1.0000153.
    CHECK(ramp_fraction(ramp_shape::asymptotic, 1.0 / 8, 1.0) == doctest::Approx(0.75).epsilon(2e-5));
    CHECK(ramp_fraction(ramp_shape::asymptotic, 0.5 / 8, 0.5) == doctest::Approx(0.75).epsilon(2e-5));
    CHECK(ramp_fraction(ramp_shape::asymptotic, 0, 1) == 0);
    CHECK(ramp_fraction(ramp_shape::asymptotic, 1, 1) == 1);
    CHECK(ramp_fraction(ramp_shape::asymptotic, 0.25, 1) == doctest::Approx(1 - 1.0 / 16).epsilon(2e-5));
    CHECK(ramp_fraction(ramp_shape::asymptotic, 0.9, 0.5) == 1);  // past the ramp
    double prev = -1;
    for (int i = 0; i <= 64; ++i) {  // increasing
        const double f = ramp_fraction(ramp_shape::asymptotic, i / 64.0, 1);
        CHECK(f > prev);
        prev = f;
    }
    // AGP (baselines.md §8): s_t = s_f (1 - (1 - x)^3)
    CHECK(ramp_fraction(ramp_shape::cubic, 0.5, 1) == doctest::Approx(0.875));
    CHECK(ramp_fraction(ramp_shape::cubic, 0.25, 1) == doctest::Approx(1 - 0.75 * 0.75 * 0.75));
    CHECK(ramp_fraction(ramp_shape::cubic, 0.25, 0.5) == doctest::Approx(0.875));
    CHECK(ramp_fraction(ramp_shape::cubic, 0, 1) == 0);
    CHECK(ramp_fraction(ramp_shape::cubic, 2, 1) == 1);
    CHECK(ramp_fraction(ramp_shape::linear, 0.3, 1) == doctest::Approx(0.3));
    CHECK(ramp_fraction(ramp_shape::linear, 0.3, 0.6) == doctest::Approx(0.5));
    CHECK(ramp_fraction(ramp_shape::linear, 0.3, 0) == 1);  // no ramp
    CHECK(ramp_fraction(ramp_shape::constant, 0, 1) == 1);
    CHECK(psap::parse_ramp_shape("agp") == ramp_shape::cubic);
    CHECK_THROWS_WITH_AS(psap::parse_ramp_shape("exp"), doctest::Contains("exp"), psap::error);

    SUBCASE("the ramped schedules meet B * r(progress)") {
        model<float> m(bank({16, 16}));
        harness<net_t> h(m.net(), {budget_kind::filters, 0.5});
        h.info.progress = 0.25;
        auto plan = h.new_plan();
        psap::agp{.ramp_end = 0.5}.plan(m.net(), h.ctx(), plan);
        CHECK(plan.budget_now == doctest::Approx(0.5 * 0.875));
        CHECK(plan.count == std::vector<index>{7, 7});  // 14 of 32 >= 0.4375 * 32 = 14
        h.info.progress = 1.0 / 8;
        psap::asymptotic{}.plan(m.net(), h.ctx(), plan);
        CHECK(plan.budget_now == doctest::Approx(0.375).epsilon(2e-5));
        // B_t = 0.5 * 0.7500114 = 0.3750057: 12 of 32 channels is 0.375, just short; equal groups
        // prune equal counts, so 7 + 7.
        CHECK(plan.count == std::vector<index>{7, 7});
    }
}

/// Three BN groups of 10 (hand case of the leaky control): prev ratios 0.2 / 0.4 / 0.3 with
/// 2 / 4 / 3 gated channels; active |gamma| 1 (one gamma is -1 in g2 and in g3) except 3
/// small ones in g1 and 1 in g3, so the channel sparsity is s = 0.3 / 0 / 0.1 (small = below 0.25 * median active |gamma| = 0.25).
struct leaky_case {
    model<float> m{bank({10, 10, 10})};
    harness<net_t> h{m.net(), {budget_kind::filters, 0.3}};
    leaky_case() {
        for (auto* l : {&m.layer("c1"), &m.layer("c2"), &m.layer("c3")}) std::fill(l->gamma.begin(), l->gamma.end(), 1.0f);
        m.layer("c1").gamma[0] = m.layer("c1").gamma[1] = 0;  // gated
        m.layer("c1").gamma[2] = m.layer("c1").gamma[3] = m.layer("c1").gamma[4] = 0.01f;
        for (int c = 0; c < 4; ++c) m.layer("c2").gamma[static_cast<std::size_t>(c)] = 0;
        for (int c = 0; c < 3; ++c) m.layer("c3").gamma[static_cast<std::size_t>(c)] = 0;
        m.layer("c3").gamma[5] = 0.1f;
        m.layer("c2").gamma[9] = m.layer("c3").gamma[8] = -1.0f;  // the magnitude is |gamma|
        h.set_pruned(0, {0, 1});
        h.set_pruned(1, {0, 1, 2, 3});
        h.set_pruned(2, {0, 1, 2});
        const double prev[3] = {0.2, 0.4, 0.3};
        for (int g = 0; g < 3; ++g) {
            h.groups[static_cast<std::size_t>(g)].ratio = prev[g];
            h.groups[static_cast<std::size_t>(g)].budget = 0.3;  // not the first step
        }
    }
    psap::schedule_plan run(const psap::adaptive_sparsity& s) {
        auto plan = h.new_plan();
        s.plan(m.net(), h.ctx(), plan);
        return plan;
    }
};

TEST_CASE("adaptive_sparsity: leaky control d = (1 - alpha) p_prev + alpha p_bar + eta (s - r) on a hand case") {
    leaky_case lc;
    psap::adaptive_sparsity s;
    s.ramp = psap::ramp_shape::constant;  // B_t = 0.3: 9 of 30 channels
    // p_bar = 0.3. d = 0.8*0.2 + 0.06 + 0.5*0.3 = 0.37, 0.8*0.4 + 0.06 = 0.38, 0.8*0.3 + 0.06 + 0.05 = 0.35.
    // Rate limit 0.1: g1 in [0.1, 0.3], g2 in [0.3, 0.5], g3 in [0.2, 0.4]. Counts floor(10 p):
    // for mu in [-0.07, -0.05) they are 3 (g1 at its cap), 3, 2 = 8 < 9; at mu = -0.05 g3 reaches 0.3: 9.
    SUBCASE("leaky") {
        const auto plan = lc.run(s);
        CHECK(plan.budget_now == 0.3);
        CHECK(plan.sparsity == std::vector<double>{0.3, 0.0, 0.1});
        CHECK(plan.pressure == std::vector<double>{0.0, 0.0, 0.0});
        CHECK(plan.mu == doctest::Approx(-0.05).epsilon(1e-8));
        CHECK(plan.ratio[0] == doctest::Approx(0.3));  // clipped at p_prev + max_change
        CHECK(plan.ratio[1] == doctest::Approx(0.33));
        CHECK(plan.ratio[2] == doctest::Approx(0.30));
        CHECK(plan.count == std::vector<index>{3, 3, 3});
        CHECK_FALSE(plan.relaxed);
    }
    SUBCASE("regrowth pressure: one restore in g3 gives r = 0.1 and d3 = 0.30") {
        lc.h.restored = lc.h.new_lists();
        lc.h.restored[2] = {0};
        // d = 0.37, 0.38, 0.30: at mu = -0.05 counts are 3, 3, 2 = 8; g3 reaches 0.3 at mu = 0
        // (g2 stays inside [0.3, 0.5] at 0.38).
        const auto plan = lc.run(s);
        CHECK(plan.pressure == std::vector<double>{0.0, 0.0, 0.1});
        CHECK(plan.mu == doctest::Approx(0.0).epsilon(1e-8));
        CHECK(plan.ratio[1] == doctest::Approx(0.38));
        CHECK(plan.ratio[2] == doctest::Approx(0.30));
        CHECK(plan.count == std::vector<index>{3, 3, 3});
    }
    SUBCASE("proportional rule: d = p_bar * s / mean(s)") {
        s.allocation = psap::adaptive_sparsity::rule::proportional;
        // mean s = 0.4/3; d = 0.675, 0, 0.225. g1 sits at its cap 0.3 for mu >= -0.375, g2 at its
        // floor 0.3 until mu = 0.3, g3 = 0.225 + mu reaches 0.3 at mu = 0.075: counts 3, 3, 3.
        const auto plan = lc.run(s);
        CHECK(plan.mu == doctest::Approx(0.075).epsilon(1e-8));
        CHECK(plan.count == std::vector<index>{3, 3, 3});
    }
    SUBCASE("uniform rule: d = p_bar, only the budget solver moves it") {
        s.allocation = psap::adaptive_sparsity::rule::uniform;
        const auto plan = lc.run(s);
        CHECK(plan.mu == doctest::Approx(0.0).epsilon(1e-8));  // p = p_bar + mu = 0.3 meets 9 of 30
        CHECK(plan.ratio[0] == doctest::Approx(0.3));
        CHECK(plan.ratio[1] == doctest::Approx(0.3));
        CHECK(plan.ratio[2] == doctest::Approx(0.3));
    }
    SUBCASE("prepare() measures ahead of plan(), which uses it once, for that step and those masks only") {
        const auto plain = lc.run(s);
        const auto groups = std::span<const psap::group_state>(lc.h.groups);
        s.prepare(lc.m.net(), groups, lc.h.info.step);
        const auto prepared = lc.run(s);
        CHECK(prepared.sparsity == plain.sparsity);
        CHECK(prepared.count == plain.count);
        CHECK(prepared.mu == plain.mu);
        // A gamma changed after prepare(): plan() reports what prepare() measured, the next plan() measures anew.
        s.prepare(lc.m.net(), groups, lc.h.info.step);
        lc.m.layer("c2").gamma[9] = 0.01f;  // one more small active channel in g2: s2 = 0.1
        CHECK(lc.run(s).sparsity == std::vector<double>{0.3, 0.0, 0.1});
        CHECK(lc.run(s).sparsity == std::vector<double>{0.3, 0.1, 0.1});
        // prepared for another step, or for other masks: not used
        lc.m.layer("c2").gamma[9] = 1.0f;
        s.prepare(lc.m.net(), groups, lc.h.info.step + 1);
        lc.m.layer("c2").gamma[9] = 0.01f;
        CHECK(lc.run(s).sparsity == std::vector<double>{0.3, 0.1, 0.1});
        lc.m.layer("c2").gamma[9] = 1.0f;
        const std::vector<psap::group_state> copy(lc.h.groups.begin(), lc.h.groups.end());
        s.prepare(lc.m.net(), std::span<const psap::group_state>(copy), lc.h.info.step);
        lc.m.layer("c2").gamma[9] = 0.01f;
        CHECK(lc.run(s).sparsity == std::vector<double>{0.3, 0.1, 0.1});
    }
    SUBCASE("the first pruning step is uniform whatever the sparsity") {
        for (auto& g : lc.h.groups) g.budget = 0;
        const auto plan = lc.run(s);
        CHECK(plan.sparsity == std::vector<double>{0.3, 0.0, 0.1});  // measured and logged all the same
        CHECK(plan.ratio[0] == plan.ratio[1]);
        CHECK(plan.ratio[1] == plan.ratio[2]);
        CHECK(plan.ratio[0] == doctest::Approx(0.3));
        CHECK(plan.count == std::vector<index>{3, 3, 3});
    }
    SUBCASE("the rate limit holds unless the budget cannot be met within it; then `relaxed`") {
        // prev 0.2 / 0.4 / 0.3 +- 0.1 reaches at most 3 + 5 + 4 = 12 of 30 channels
        lc.h.target.target = 0.4;  // 12 of 30: reachable
        auto plan = lc.run(s);
        CHECK_FALSE(plan.relaxed);
        const double prev[3] = {0.2, 0.4, 0.3};
        for (int g = 0; g < 3; ++g) CHECK(std::abs(plan.ratio[static_cast<std::size_t>(g)] - prev[g]) <= 0.1 + 1e-12);
        lc.h.target.target = 0.5;  // 15 of 30: not reachable within the limit
        plan = lc.run(s);
        CHECK(plan.relaxed);
        index total = 0;
        for (auto q : plan.count) total += q;
        CHECK(total >= 15);
        for (double p : plan.ratio) CHECK(p <= s.p_max);
    }
    SUBCASE("a previous ratio above a lowered p_max starts from p_max: the rate-limit window is never empty") {
        // prev 0.4 in g2 with p_max lowered to 0.25 (a resumed run with a new setting):
        // the window [max(p_min, prev - 0.1), min(p_max, prev + 0.1)] would be [0.3, 0.25].
        s.p_max = 0.25;
        lc.h.target.target = 0.1;  // 3 of 30
        const auto plan = lc.run(s);
        const double prev[3] = {0.2, 0.25, 0.25};  // the previous ratios brought inside [0, 0.25]
        for (std::size_t g = 0; g < 3; ++g) {
            CHECK(plan.ratio[g] <= 0.25);
            CHECK(std::abs(plan.ratio[g] - prev[g]) <= 0.1 + 1e-12);
        }
        index total = 0;
        for (auto q : plan.count) total += q;
        CHECK(total >= 3);
    }
    SUBCASE("p_min and p_max bound every ratio") {
        for (auto& g : lc.h.groups) g.budget = 0;  // first step: the rate limit does not apply
        s.p_min = 0.2;
        lc.h.target.target = 0.05;  // 2 channels would do, but every group prunes >= 2 of 10
        auto plan = lc.run(s);
        CHECK(plan.count == std::vector<index>{2, 2, 2});
        for (double p : plan.ratio) CHECK(p >= 0.2);
        s.p_min = 0;
        s.p_max = 0.5;
        lc.h.target.target = 0.7;
        CHECK_THROWS_WITH_AS(lc.run(s), doctest::Contains("maximum ratio 0.5"), psap::error);
        s.p_max = 1.0;
        CHECK_THROWS_WITH_AS(lc.run(s), doctest::Contains("p_max = 1"), psap::error);
    }
}

TEST_CASE("adaptive_sparsity reuses its uniform ratio only for the same budget, bounds, rounding and cost model") {
    // One schedule object planning a sequence of changed settings gives, at each, the plan of a fresh object.
    leaky_case lc;
    model<float> other_m(bank({12, 9, 20}));
    harness<net_t> other{other_m.net(), {budget_kind::filters, 0.3}};
    for (auto& g : other.groups) g.budget = 0.3, g.ratio = 0.3;
    psap::adaptive_sparsity reused;
    reused.ramp = psap::ramp_shape::constant;
    const auto same_plan = [&](harness<net_t>& h, const model<float>& m) {
        auto a = h.new_plan(), b = h.new_plan();
        reused.plan(m.net(), h.ctx(), a);
        psap::adaptive_sparsity fresh = reused;
        fresh.workspace = {};
        fresh.plan(m.net(), h.ctx(), b);
        CHECK(a.mu == b.mu);
        CHECK(a.ratio == b.ratio);
        CHECK(a.count == b.count);
        return a;
    };
    const auto first = same_plan(lc.h, lc.m);
    CHECK(same_plan(lc.h, lc.m).mu == first.mu);  // unchanged settings: the same plan
    lc.h.target.target = 0.4;
    same_plan(lc.h, lc.m);
    lc.h.target.target = 0.3;
    reused.p_max = 0.35;
    same_plan(lc.h, lc.m);
    reused.p_max = 0.8;
    reused.p_min = 0.2;
    same_plan(lc.h, lc.m);
    reused.p_min = 0;
    lc.h.keep_multiple = 4;
    same_plan(lc.h, lc.m);
    lc.h.keep_multiple = 1;
    lc.h.target.kind = budget_kind::params;
    same_plan(lc.h, lc.m);
    other.target = lc.h.target;  // another network's cost model at the same budget
    same_plan(other, other_m);
    same_plan(lc.h, lc.m);
}

TEST_CASE("adaptive_sparsity sparsity measures on hand cases") {
    SUBCASE("channel measure without batch norm: filter L2 norms below delta * median active norm") {
        layer_spec l{.name = "c", .out = 5, .in = 2};
        model<float> m({{l}, {{"g", 5, {{"c", 0}}, {}}}});
        auto& ol = m.layer("c");
        const float rows[5][2] = {{1, 0}, {0, 1}, {0.6f, 0.8f}, {0.1f, 0}, {0.2f, 0}};
        for (int f = 0; f < 5; ++f)
            for (int j = 0; j < 2; ++j) ol.weight(f, j) = rows[f][j];
        psap::adaptive_sparsity s;
        // active norms 1, 1, 1, 0.1 (channel 4 pruned): median 1, one below 0.25 -> 1/5
        const std::vector<std::uint8_t> mask{0, 0, 0, 0, 1};
        CHECK(s.measure(m.net(), 0, mask) == doctest::Approx(0.2));
        const std::vector<std::uint8_t> none(5, 0);  // channel 4 (0.2) counts too when active
        CHECK(s.measure(m.net(), 0, none) == doctest::Approx(0.4));
    }
    SUBCASE("element measure: elements of active filters below element_delta * RMS of the active elements") {
        layer_spec l{.name = "c", .out = 3, .in = 4};
        model<float> m({{l}, {{"g", 3, {{"c", 0}}, {}}}});
        auto& ol = m.layer("c");
        const float rows[3][4] = {{1, 1, 0.01f, 1}, {1, 0, 1, 1}, {0, 0, 0, 0}};
        for (int f = 0; f < 3; ++f)
            for (int j = 0; j < 4; ++j) ol.weight(f, j) = rows[f][j];
        psap::adaptive_sparsity s;
        s.sparsity = psap::adaptive_sparsity::measure_kind::element;
        const std::vector<std::uint8_t> mask{0, 0, 1};
        // RMS of the 8 active elements = sqrt(6.0001 / 8) = 0.866; 0.05 * RMS = 0.0433: 0.01 and 0 are
        // below -> 2 / 8. The pruned filter's zeros are not counted.
        CHECK(s.measure(m.net(), 0, mask) == doctest::Approx(0.25));
        s.element_delta = 0.005;  // threshold 0.00433: only the exact 0
        CHECK(s.measure(m.net(), 0, mask) == doctest::Approx(0.125));
    }
}

TEST_CASE("PSAP monotonicity: a sparser group never gets a lower ratio than a denser one with the same history") {
    int compared = 0;
    for (std::uint64_t k = 0; k < 40; ++k) {
        const auto seed = psap_test::seed() + 300 + k;
        CAPTURE(seed);
        rng r(seed);
        std::vector<index> sizes;
        const index n = r.between(4, 8);
        for (index g = 0; g < n; ++g) sizes.push_back(r.between(8, 24));
        model<float> m(bank(sizes));
        harness<net_t> h(m.net(), {budget_kind::filters, r.uniform(0.2, 0.6)});
        std::vector<std::tuple<double, double>> history(static_cast<std::size_t>(n));
        for (index g = 0; g < n; ++g) {
            auto& l = m.layer(str("c", g + 1));
            const double small = r.uniform(0, 0.5);  // fraction of tiny |gamma|
            for (auto& x : l.gamma) x = static_cast<float>(r.coin(small) ? 0.01 * r.uniform() : r.uniform(0.5, 1.5));
            auto& st = h.groups[static_cast<std::size_t>(g)];
            st.ratio = r.coin() ? 0.2 : 0.3;
            st.budget = 0.2;
            const index pruned = psap::pruned_count(st.ratio, sizes[static_cast<std::size_t>(g)]);
            for (index c = 0; c < pruned; ++c)
                st.pruned[static_cast<std::size_t>(c)] = 1, l.gamma[static_cast<std::size_t>(c)] = 0;
        }
        h.restored = h.new_lists();
        for (index g = 0; g < n; ++g)
            if (r.coin(0.3)) h.restored[static_cast<std::size_t>(g)] = {0};
        for (auto rule : {psap::adaptive_sparsity::rule::leaky, psap::adaptive_sparsity::rule::proportional}) {
            psap::adaptive_sparsity s;
            s.ramp = psap::ramp_shape::constant;
            s.allocation = rule;
            auto plan = h.new_plan();
            s.plan(m.net(), h.ctx(), plan);
            for (std::size_t a = 0; a < sizes.size(); ++a)
                for (std::size_t b = 0; b < sizes.size(); ++b) {
                    // same history: previous ratio and regrowth pressure r = restored / N
                    if (h.groups[a].ratio != h.groups[b].ratio || plan.pressure[a] != plan.pressure[b]) continue;
                    if (plan.sparsity[a] > plan.sparsity[b]) {
                        CHECK(plan.ratio[a] >= plan.ratio[b]);
                        ++compared;
                    }
                }
        }
    }
    CHECK(compared > 50);  // the random cases did exercise the property
}

TEST_CASE("global_threshold: the globally lowest scores go first, no group beyond p_max") {
    model<float> m(bank({10, 10, 10}));
    harness<net_t> h(m.net(), {budget_kind::filters, 0.4});  // 12 channels
    h.scores = h.new_scores();
    for (int c = 0; c < 10; ++c) {
        h.scores[0][static_cast<std::size_t>(c)] = 0.01 * (c + 1);  // 0.01 .. 0.10: the 10 lowest
        h.scores[1][static_cast<std::size_t>(c)] = 0.5 + 0.01 * c;
        h.scores[2][static_cast<std::size_t>(c)] = c < 2 ? 0.2 + 0.1 * c : 0.9;  // 0.2, 0.3, then high
    }
    psap::global_threshold t;  // p_max 0.9: at most 9 of 10
    auto plan = h.new_plan();
    t.plan(m.net(), h.ctx(), plan);
    // g1 gives 9 (capped), then 0.2, 0.3 from g3 and 0.5 from g2
    CHECK(plan.count == std::vector<index>{9, 1, 2});
    CHECK(plan.ratio[0] == doctest::Approx(0.9));
    t.p_max = 0.5;
    plan = h.new_plan();
    t.plan(m.net(), h.ctx(), plan);
    // g1 capped at 5; then g3's 0.2, 0.3; then g2's 0.5, 0.51, 0.52, 0.53, 0.54 -> 5 + 5 + 2 = 12
    CHECK(plan.count == std::vector<index>{5, 5, 2});
    h.target.target = 0.6;  // 18 > 5 + 5 + 5
    CHECK_THROWS_WITH_AS(t.plan(m.net(), h.ctx(), plan), doctest::Contains("cannot be met"), psap::error);

    SUBCASE("with keep_multiple a group's count follows the channels taken from it, kept rounded up") {
        h.keep_multiple = 4;  // kept in {10, 8, 4}: pruned in {0, 2, 6}
        // g1's 10 lowest: taking 2 prunes 2, taking 6 prunes 6, more would keep fewer than 4 (cap 6);
        // g3's 0.2 and 0.3 prune 2 (8 so far); g2's 0.5, 0.51 prune 2 (10); ...; its 6th, 0.55, prunes 6: 14 >= 12.
        plan = h.new_plan();
        t.p_max = 0.9;
        h.target.target = 0.4;
        t.plan(m.net(), h.ctx(), plan);
        CHECK(plan.count == std::vector<index>{6, 6, 2});
    }
    SUBCASE("ties break by group name, then channel, not by the order groups were added") {
        model_spec sp = bank({4, 4});
        std::swap(sp.groups[0].name, sp.groups[1].name);  // "g2" first
        model<float> m2(sp);
        harness<net_t> h2(m2.net(), {budget_kind::filters, 0.25});  // 2 of 8
        h2.scores = h2.new_scores();                                // all 0
        psap::global_threshold t2;
        auto p2 = h2.new_plan();
        t2.plan(m2.net(), h2.ctx(), p2);
        CHECK(p2.count == std::vector<index>{0, 2});  // both from "g1", the second group added
    }
}

// ---------------------------------------------------------------- conformance
struct adaptive_proportional : psap::adaptive_sparsity {
    adaptive_proportional() { allocation = rule::proportional; }
};
struct adaptive_uniform : psap::adaptive_sparsity {
    adaptive_uniform() { allocation = rule::uniform; }
};
struct adaptive_element : psap::adaptive_sparsity {
    adaptive_element() {
        sparsity = measure_kind::element;
        p_min = 0.05;
    }
};
struct uniform_linear : psap::uniform {
    uniform_linear() {
        ramp = psap::ramp_shape::linear;
        ramp_end = 0.7;
    }
};
struct slimming_linear : psap::global_threshold {
    slimming_linear() { ramp = psap::ramp_shape::linear; }
};

static_assert(psap::schedule_for<psap::schedule_archetype, net_t>);
static_assert(!psap::schedule_for<psap::l2_norm, net_t>);

TEST_CASE_TEMPLATE("schedule contract: 0 <= count < N and the same plan for the same inputs", S, psap::uniform, uniform_linear,
                   psap::asymptotic, psap::agp, psap::adaptive_sparsity, adaptive_proportional, adaptive_uniform,
                   adaptive_element, psap::global_threshold, slimming_linear, psap::schedule_archetype) {
    for (std::uint64_t k = 0; k < 12; ++k) {
        const auto seed = psap_test::seed() + 400 + k;
        CAPTURE(seed);
        model<float> m(random_spec(seed));
        m.fill_random(seed);
        rng r(seed);
        const budget_kind kind = std::array{budget_kind::flops, budget_kind::params, budget_kind::filters}[k % 3];
        harness<net_t> h(m.net(), {kind, r.uniform(0.05, 0.45)});
        h.info.step = static_cast<index>(k % 3);
        h.info.progress = r.uniform();
        h.keep_multiple = k % 4 == 1 ? 2 : 1;
        for (auto& g : h.groups) {
            g.ratio = r.uniform(0, 0.5);
            g.budget = k % 2 ? 0.0 : 0.2;
            for (auto& p : g.pruned) p = r.coin(g.ratio);
            if (g.pruned_count() == g.size()) g.pruned[0] = 0;
        }
        h.restored = h.new_lists();
        h.scores = h.new_scores();
        psap::l2_norm{}.score(m.net(), h.ctx(), h.scores);
        S s1{}, s2{};
        auto p1 = h.new_plan(), p2 = h.new_plan();
        s1.plan(m.net(), h.ctx(), p1);
        s2.plan(m.net(), h.ctx(), p2);
        for (std::size_t g = 0; g < h.groups.size(); ++g) {
            CHECK(p1.count[g] >= 0);
            CHECK(p1.count[g] < h.groups[g].size());
            CHECK(std::isfinite(p1.ratio[g]));
        }
        CHECK(p1.count == p2.count);
        CHECK(std::memcmp(p1.ratio.data(), p2.ratio.data(), p1.ratio.size() * sizeof(double)) == 0);
        CHECK((p1.budget_now == p2.budget_now || (std::isnan(p1.budget_now) && std::isnan(p2.budget_now))));
        // a schedule that meets a budget reports the B_t it met
        if (p1.budget_now > 0 && !std::is_same_v<S, psap::schedule_archetype>)
            CHECK(psap::achieved_reduction(h.costs, kind, p1.count) >= p1.budget_now - 1e-12);
    }
}

}  // namespace
