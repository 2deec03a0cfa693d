// The criterion family (policy/criterion/*): hand-computed small cases per
// criterion, a brute-force FPGM reference, and the family's conformance suite
// (finite, non-negative, deterministic scores that leave the network alone).
#include <psap/network/network.hpp>
#include <psap/policy/criterion/bn_scale.hpp>
#include <psap/policy/criterion/concept.hpp>
#include <psap/policy/criterion/fpgm.hpp>
#include <psap/policy/criterion/lp_norm.hpp>
#include <psap/policy/criterion/random.hpp>
#include <psap/policy/criterion/taylor.hpp>

#include <support/model.hpp>
#include <support/policy_harness.hpp>
#include <support/random_net.hpp>
#include <support/seed.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

using psap::index;
using namespace psap_test;
using net_t = psap::network<float>;

/// Two convs tied by a residual sum (a two-member group "g" of 3 channels), each
/// 3 filters of 2 values, with batch norm (eps = 1) when `bn`.
model_spec pair_spec(bool bn) {
    layer_spec a{.name = "a", .out = 3, .in = 2, .kernel_area = 1, .positions = 1, .bias = false, .bn = bn};
    layer_spec b = a;
    b.name = "b";
    return {{a, b}, {{"g", 3, {{"a", 0}, {"b", 0}}, {}}}};
}
void set_rows(owned_layer<float>& l, std::vector<std::vector<float>> rows) {
    for (std::size_t f = 0; f < rows.size(); ++f)
        for (std::size_t j = 0; j < rows[f].size(); ++j) l.weight(static_cast<index>(f), static_cast<index>(j)) = rows[f][j];
}
template <class C>
std::vector<std::vector<double>> score_once(C& c, harness<net_t>& h) {
    auto s = h.new_scores();
    c.score(h.net, h.ctx(), s);
    return s;
}

TEST_CASE("l1 and l2 norms: raw, summed over members, and BN-folded |gamma| * ||F|| / sqrt(var + eps)") {
    model<float> m(pair_spec(true));
    set_rows(m.layer("a"), {{3, 4}, {1, 0}, {0, -2}});
    set_rows(m.layer("b"), {{0, 0}, {-1, 1}, {2, 2}});
    assign(m.layer("a").gamma, {2, -1, 0.5f});
    assign(m.layer("a").var, {3, 0, 8});  // sqrt(var + 1) = 2, 1, 3
    assign(m.layer("b").gamma, {1, 1, -3});
    assign(m.layer("b").var, {0, 3, 15});  // sqrt(var + 1) = 1, 2, 4
    m.net().layer_at(0).bn->eps = 1.0;
    m.net().layer_at(1).bn->eps = 1.0;
    harness<net_t> h(m.net());

    // raw: member a's norms + member b's norms (BN ignored)
    psap::l1_norm l1;
    psap::l2_norm l2;
    auto s = score_once(l1, h)[0];
    CHECK(s[0] == doctest::Approx(7 + 0));
    CHECK(s[1] == doctest::Approx(1 + 2));
    CHECK(s[2] == doctest::Approx(2 + 4));
    s = score_once(l2, h)[0];
    CHECK(s[0] == doctest::Approx(5 + 0));
    CHECK(s[1] == doctest::Approx(1 + std::sqrt(2.0)));
    CHECK(s[2] == doctest::Approx(2 + std::sqrt(8.0)));

    // folded: each member's norm times its own |gamma| / sqrt(var + eps)
    l1.fold_bn = l2.fold_bn = true;
    s = score_once(l1, h)[0];
    CHECK(s[0] == doctest::Approx(2.0 * 7 / 2 + 1.0 * 0 / 1));
    CHECK(s[1] == doctest::Approx(1.0 * 1 / 1 + 1.0 * 2 / 2));
    CHECK(s[2] == doctest::Approx(0.5 * 2 / 3 + 3.0 * 4 / 4));
    s = score_once(l2, h)[0];
    CHECK(s[0] == doctest::Approx(2.0 * 5 / 2));
    CHECK(s[1] == doctest::Approx(1.0 + std::sqrt(2.0) / 2));
    CHECK(s[2] == doctest::Approx(0.5 * 2 / 3 + 3.0 * std::sqrt(8.0) / 4));

    SUBCASE("without a running-variance view the variance counts as 1") {
        m.net().layer_at(0).bn->running_var = {};
        m.net().layer_at(1).bn->running_var = {};
        s = score_once(l2, h)[0];
        const double k = 1 / std::sqrt(2.0);  // 1 / sqrt(1 + eps)
        CHECK(s[0] == doctest::Approx(2 * 5 * k + 0));
        CHECK(s[2] == doctest::Approx(0.5 * 2 * k + 3 * std::sqrt(8.0) * k));
    }
}

TEST_CASE("l2 fold_bn on a group without batch norm is the raw norm") {
    model<float> m(pair_spec(false));
    set_rows(m.layer("a"), {{3, 4}, {0, 1}, {0, 0}});
    harness<net_t> h(m.net());
    psap::l2_norm l2{.fold_bn = true};
    const auto s = score_once(l2, h)[0];
    CHECK(s[0] == doctest::Approx(5));
    CHECK(s[1] == doctest::Approx(1));
    CHECK(s[2] == 0);
}

TEST_CASE("l2 fold_bn reads host batch norms where they lie: the scores of the formula over double copies, bit for bit, at any stride") {
    const auto seed = psap_test::seed() + 43;
    CAPTURE(seed);
    model<float> m(random_spec(seed, {.all_bn = true, .min_width = 30, .max_width = 60}));
    m.fill_random(seed);
    auto& net = m.net();
    // Some variances negative and some zero (the fold clamps at 0), gammas of both signs.
    for (std::size_t i = 0; i < net.layers().size(); ++i)
        if (auto& bn = net.layer_at(static_cast<index>(i)).bn; bn) {
            for (index c = 0; c < bn->running_var.size(); c += 7) bn->running_var[c] = c % 2 ? -0.5f : 0.0f;
            for (index c = 0; c < bn->gamma.size(); c += 3) bn->gamma[c] = -bn->gamma[c];
        }
    // The reference: psap::reduce's canonical sum of squares per row, its root,
    // times |gamma| / sqrt(max(var, 0) + eps) from the values widened to double.
    auto reference = [&] {
        std::vector<std::vector<double>> want(net.groups().size());
        for (std::size_t g = 0; g < want.size(); ++g) {
            want[g].assign(static_cast<std::size_t>(net.groups()[g].size), 0.0);
            for (std::size_t k = 0; k < net.groups()[g].members.size(); ++k) {
                const auto mv = psap::member_of(net, static_cast<index>(g), k);
                for (index i = 0; i < mv.weight.rows(); ++i) {
                    const double norm = std::sqrt(psap::reduce::unary(mv.weight.row_data(i), mv.weight.col_stride(), mv.weight.cols(),
                                                                      psap::reduce::square{}));
                    const double var = mv.bn->running_var.empty() ? 1.0 : double(mv.bn->running_var[i]);
                    want[g][static_cast<std::size_t>(i)] +=
                        std::abs(double(mv.bn->gamma[i])) * norm / std::sqrt(std::max(var, 0.0) + mv.bn->eps);
                }
            }
        }
        return want;
    };
    harness<net_t> h(net);
    psap::l2_norm l2{.fold_bn = true};
    const auto want = reference();
    CHECK(score_once(l2, h) == want);
    // The same values seen through views of stride 3 into other buffers.
    std::vector<std::vector<float>> keep;
    for (std::size_t i = 0; i < net.layers().size(); ++i)
        if (auto& bn = net.layer_at(static_cast<index>(i)).bn; bn)
            for (auto* v : {&bn->gamma, &bn->running_var}) {
                auto& buf = keep.emplace_back(static_cast<std::size_t>(3 * v->size()), -9.0f);
                for (index c = 0; c < v->size(); ++c) buf[static_cast<std::size_t>(3 * c)] = (*v)[c];
                *v = psap::vector_view<float>(buf.data(), v->size(), 3);
            }
    harness<net_t> hs(net);
    CHECK(score_once(l2, hs) == want);
}

TEST_CASE("lp_norm keeps working memory across calls: reused on networks of other shapes and element types, and copied, it scores like a fresh one") {
    const auto seed = psap_test::seed() + 41;
    CAPTURE(seed);
    model<float> a(random_spec(seed)), b(random_spec(seed + 1, {.all_bn = true, .min_width = 30, .max_width = 60}));
    model<double> c(random_spec(seed + 2));
    harness<net_t> ha(a.net()), hb(b.net());
    harness<psap::network<double>> hc(c.net());
    auto fresh = [](auto& h) {
        psap::l2_norm l2{.fold_bn = true};
        auto s = h.new_scores();
        l2.score(h.net, h.ctx(), s);
        return s;
    };
    const auto want_a = fresh(ha), want_b = fresh(hb), want_c = fresh(hc);
    psap::l2_norm used{.fold_bn = true};
    auto again = [&](psap::l2_norm& l2, auto& h) {
        auto s = h.new_scores();
        l2.score(h.net, h.ctx(), s);
        return s;
    };
    CHECK(again(used, hb) == want_b);
    CHECK(again(used, ha) == want_a);  // a smaller network after a larger one
    CHECK(again(used, hc) == want_c);  // another element type
    CHECK(again(used, hb) == want_b);
    psap::l2_norm copy = used;  // the copy holds no memory of the original
    CHECK(again(copy, ha) == want_a);
    CHECK(again(used, hb) == want_b);
    psap::l2_norm moved = std::move(copy);
    CHECK(again(moved, hc) == want_c);
    CHECK(again(copy, hb) == want_b);  // NOLINT(bugprone-use-after-move): a moved-from policy still works
}

TEST_CASE("fpgm: the geometric-median distance, by hand and against a brute-force double loop") {
    SUBCASE("three 1-D filters 0, 1, 3: distances 4, 3, 5, so the middle one is the most replaceable") {
        layer_spec l{.name = "c", .out = 3, .in = 1};
        model<float> m({{l}, {{"g", 3, {{"c", 0}}, {}}}});
        set_rows(m.layer("c"), {{0}, {1}, {3}});
        harness<net_t> h(m.net());
        psap::fpgm f;
        const auto s = score_once(f, h)[0];
        CHECK(s[0] == doctest::Approx(4));
        CHECK(s[1] == doctest::Approx(3));
        CHECK(s[2] == doctest::Approx(5));
    }
    SUBCASE("random networks; multi-member groups use the concatenated filters") {
        for (std::uint64_t k = 0; k < 10; ++k) {
            const auto seed = psap_test::seed() + 100 + k;
            CAPTURE(seed);
            model<float> m(random_spec(seed, {.pair_probability = 0.6}));
            m.fill_random(seed);
            harness<net_t> h(m.net());
            psap::fpgm f;
            const auto s = score_once(f, h);
            for (std::size_t g = 0; g < s.size(); ++g) {
                const auto& grp = m.net().groups()[g];
                for (index i = 0; i < grp.size; ++i) {
                    double ref = 0;
                    for (index j = 0; j < grp.size; ++j) {
                        double d2 = 0;  // ||concat_m F_mi - concat_m F_mj||^2
                        for (const auto& span : grp.members) {
                            const auto& l = m.net().layers()[static_cast<std::size_t>(span.layer)];
                            for (index e = 0; e < l.weight.cols(); ++e) {
                                const double d = double(l.weight(span.offset + i, e)) - double(l.weight(span.offset + j, e));
                                d2 += d * d;
                            }
                        }
                        ref += std::sqrt(d2);
                    }
                    // The backend rounds each float difference to float (2^-24 relative), so
                    // the score agrees with the double reference to ~1e-7 relative.
                    CHECK(s[g][static_cast<std::size_t>(i)] == doctest::Approx(ref).epsilon(1e-6));
                }
            }
        }
    }
}

TEST_CASE("taylor with batch norm: (sum_m gamma dgamma + beta dbeta)^2, mean over iterations, EMA across steps") {
    model<float> m(pair_spec(true));
    auto& a = m.layer("a");
    auto& b = m.layer("b");
    assign(a.gamma, {2, 1, 1});
    assign(a.beta, {1, 0, 1});
    assign(b.gamma, {1, 1, 1});
    assign(b.beta, {0, 0, 1});
    harness<net_t> h(m.net());
    psap::taylor t;  // momentum 0.9
    t.bind(m.net());

    // iteration 1: channel 0: a: 2*0.5 + 1*(-3) = -2, b: 1*0 + 0 = 0 -> v = -2, v^2 = 4
    //              channel 1: a: 1*1 = 1, b: 1*(-1) = -1 -> v = 0 (members cancel before squaring)
    //              channel 2: a: 1*1 + 1*1 = 2, b: 1*1 + 1*0 = 1 -> v = 3, v^2 = 9
    assign(a.ggamma, {0.5f, 1, 1});
    assign(a.gbeta, {-3, 0, 1});
    assign(b.ggamma, {0, -1, 1});
    assign(b.gbeta, {0, 0, 0});
    t.observe(m.net(), h.octx());
    // iteration 2: channel 0: a: 2*1 + 1*1 = 3 -> 9; channel 1: a: 1*2 = 2 -> 4; channel 2: 0
    assign(a.ggamma, {1, 2, 0});
    assign(a.gbeta, {1, 0, 0});
    assign(b.ggamma, {0, 0, 0});
    t.observe(m.net(), h.octx());
    auto s = score_once(t, h)[0];
    CHECK(s[0] == doctest::Approx((4 + 9) / 2.0));
    CHECK(s[1] == doctest::Approx((0 + 4) / 2.0));
    CHECK(s[2] == doctest::Approx((9 + 0) / 2.0));
    t.after_step();

    // next step, one iteration: channel 0: 2*1 = 2 -> 4; channel 1: 0; channel 2: a: 1*2 -> 4
    assign(a.ggamma, {1, 0, 2});
    assign(a.gbeta, {0, 0, 0});
    t.observe(m.net(), h.octx());
    s = score_once(t, h)[0];
    CHECK(s[0] == doctest::Approx(0.9 * 6.5 + 0.1 * 4));
    CHECK(s[1] == doctest::Approx(0.9 * 2.0 + 0.1 * 0));
    CHECK(s[2] == doctest::Approx(0.9 * 4.5 + 0.1 * 4));
    t.after_step();

    SUBCASE("momentum 0 uses each step's mean alone") {
        psap::taylor t0;
        t0.momentum = 0;
        t0.bind(m.net());
        t0.observe(m.net(), h.octx());
        (void)score_once(t0, h);
        t0.after_step();
        assign(a.ggamma, {3, 0, 0});
        t0.observe(m.net(), h.octx());
        s = score_once(t0, h)[0];
        CHECK(s[0] == doctest::Approx(36));  // (2*3)^2
    }
    SUBCASE("a step without new observations reuses the moving average as it stands") {
        h.info.step = 2;
        s = score_once(t, h)[0];
        CHECK(s[0] == doctest::Approx(0.9 * 6.5 + 0.1 * 4));
        CHECK(s[2] == doctest::Approx(0.9 * 4.5 + 0.1 * 4));
    }
    SUBCASE("at init (step 0, nothing observed) every channel scores 0; later, no statistics at all is an error") {
        psap::taylor fresh;
        fresh.bind(m.net());
        h.info.step = 0;
        s = score_once(fresh, h)[0];
        CHECK(s == std::vector<double>{0.0, 0.0, 0.0});
        h.info.step = 3;
        psap::taylor late;
        late.bind(m.net());
        CHECK_THROWS_WITH_AS(score_once(late, h), doctest::Contains("observe()"), psap::error);
    }
    SUBCASE("batch norm without gamma/beta gradient views is an error naming the layer") {
        m.net().layer_at(1).bn->grad_beta = {};
        CHECK_THROWS_WITH_AS(t.observe(m.net(), h.octx()), doctest::Contains("'b'"), psap::error);
    }
}

TEST_CASE("taylor without batch norm: (sum_m <F, dL/dF>)^2") {
    model<float> m(pair_spec(false));
    set_rows(m.layer("a"), {{1, 2}, {0, 1}, {1, 1}});
    set_rows(m.layer("b"), {{1, 0}, {1, 1}, {-1, -1}});
    auto& a = m.layer("a");
    auto& b = m.layer("b");
    // grads: a rows (1,1), (3,0), (1,1); b rows (2,0), (0,1), (1,1)
    assign(a.gw, {1, 1, 3, 0, 1, 1});
    assign(b.gw, {2, 0, 0, 1, 1, 1});
    harness<net_t> h(m.net());
    psap::taylor t;
    t.bind(m.net());
    t.observe(m.net(), h.octx());
    const auto s = score_once(t, h)[0];
    CHECK(s[0] == doctest::Approx(std::pow(3.0 + 2.0, 2)));  // a: 1+2, b: 2
    CHECK(s[1] == doctest::Approx(std::pow(0.0 + 1.0, 2)));  // a: 0, b: 1
    CHECK(s[2] == doctest::Approx(0.0));                     // a: 2, b: -2
    m.net().layer_at(0).grad = {};
    CHECK_THROWS_WITH_AS(t.observe(m.net(), h.octx()), doctest::Contains("'a'"), psap::error);
}

TEST_CASE("bn_scale: sum of |gamma| over members; l1 adds lambda * sign(gamma) to every gamma gradient") {
    model<float> m(pair_spec(true));
    auto& a = m.layer("a");
    auto& b = m.layer("b");
    assign(a.gamma, {0.5f, -2, 0});
    assign(b.gamma, {-0.25f, 1, 0});
    harness<net_t> h(m.net());
    psap::bn_scale c;
    auto s = score_once(c, h)[0];
    CHECK(s[0] == doctest::Approx(0.75));
    CHECK(s[1] == doctest::Approx(3));
    CHECK(s[2] == 0);

    assign(a.ggamma, {0.1f, 0.1f, 0.1f});
    assign(b.ggamma, {0, 0, 0});
    c.observe(m.net(), h.octx());  // l1 = 0: no change
    CHECK(a.ggamma == std::vector<float>{0.1f, 0.1f, 0.1f});
    c.l1 = 0.01;
    c.observe(m.net(), h.octx());
    CHECK(a.ggamma[0] == doctest::Approx(0.11));
    CHECK(a.ggamma[1] == doctest::Approx(0.09));
    CHECK(a.ggamma[2] == doctest::Approx(0.1));  // sign(0) = 0
    CHECK(b.ggamma[0] == doctest::Approx(-0.01));
    CHECK(b.ggamma[1] == doctest::Approx(0.01));
    CHECK(b.ggamma[2] == 0);

    SUBCASE("a group without batch norm has no BN scale: an error naming the group") {
        model<float> nb(pair_spec(false));
        harness<net_t> hn(nb.net());
        CHECK_THROWS_WITH_AS(score_once(c, hn), doctest::Contains("'g'"), psap::error);
    }
}

TEST_CASE("random scores: deterministic per seed, different across seeds and steps, independent of group order") {
    const auto spec = random_spec(psap_test::seed() + 7, {.split_probability = 0.8});
    model<float> m1(spec);
    rng r(psap_test::seed());
    model<float> m2(spec, permutation(spec.layers.size(), r), permutation(spec.groups.size(), r));
    harness<net_t> h1(m1.net()), h2(m2.net());

    psap::random_score a{.seed = 1}, b{.seed = 2};
    const auto s1 = score_once(a, h1), s1again = score_once(a, h1), s2 = score_once(b, h1), s1perm = score_once(a, h2);
    CHECK(s1 == s1again);
    std::size_t differ = 0, total = 0;
    for (std::size_t g = 0; g < s1.size(); ++g) {
        const auto g2 = static_cast<std::size_t>(m2.net().find_group(m1.net().groups()[g].name));
        CHECK(s1[g] == s1perm[g2]);  // bitwise: same group name, same scores
        for (std::size_t c = 0; c < s1[g].size(); ++c) {
            CHECK(s1[g][c] >= 0);
            CHECK(s1[g][c] < 1);
            differ += s1[g][c] != s2[g][c];
            ++total;
        }
    }
    CHECK(differ == total);

    // a fixed ranking for the whole run unless resample_each_step
    h1.info.step = 5;
    CHECK(score_once(a, h1) == s1);
    a.resample_each_step = true;
    const auto at5 = score_once(a, h1);
    h1.info.step = 6;
    CHECK(score_once(a, h1) != at5);
}

// ---------------------------------------------------------------- conformance
// Variants with non-default settings, as types for TEST_CASE_TEMPLATE.
struct l2_folded : psap::l2_norm {
    l2_folded() { fold_bn = true; }
};
struct taylor_no_momentum : psap::taylor {
    taylor_no_momentum() { momentum = 0; }
};
struct slimming_scale : psap::bn_scale {
    slimming_scale() { l1 = 1e-4; }
};
struct random_resampled : psap::random_score {
    random_resampled() {
        seed = 99;
        resample_each_step = true;
    }
};

template <class C>
constexpr bool needs_bn = std::is_base_of_v<psap::bn_scale, C>;

static_assert(psap::criterion_for<psap::criterion_archetype, net_t>);
static_assert(psap::criterion_for<psap::fpgm, net_t>);
static_assert(psap::criterion_for<psap::taylor, net_t>);

TEST_CASE_TEMPLATE("criterion contract: finite, non-negative, deterministic scores for every group; the network is left alone", C,
                   psap::l1_norm, psap::l2_norm, l2_folded, psap::fpgm, psap::taylor, taylor_no_momentum, psap::bn_scale,
                   slimming_scale, psap::random_score, random_resampled, psap::criterion_archetype) {
    for (std::uint64_t k = 0; k < 8; ++k) {
        const auto seed = psap_test::seed() + 1000 + k;
        CAPTURE(seed);
        random_options o;
        o.all_bn = needs_bn<C> || k % 2 == 0;
        model<float> m(random_spec(seed, o));
        m.fill_random(seed);
        model<float> before(m.spec());
        before.copy_from(m);
        harness<net_t> h(m.net());
        C c1{}, c2{};
        auto run = [&](C& c) {
            if constexpr (requires { c.bind(m.net()); }) c.bind(m.net());
            std::vector<std::vector<double>> out;
            for (int step = 0; step < 2; ++step) {
                h.info.step = step;
                for (int it = 0; it < 3; ++it) {
                    m.fill_grads(seed, step * 3 + it);
                    if constexpr (requires { c.observe(m.net(), h.octx()); }) c.observe(m.net(), h.octx());
                }
                auto s = h.new_scores();
                c.score(m.net(), h.ctx(), s);
                for (std::size_t g = 0; g < s.size(); ++g) {
                    REQUIRE(s[g].size() == static_cast<std::size_t>(m.net().groups()[g].size));
                    for (double x : s[g]) {
                        CHECK(std::isfinite(x));
                        CHECK(x >= 0);
                    }
                }
                if constexpr (requires { c.after_step(); }) c.after_step();
                out.insert(out.end(), s.begin(), s.end());
            }
            return out;
        };
        const auto r1 = run(c1);
        // bn_scale's l1 term writes gamma gradients by design; values must be untouched
        CHECK(m.same_values(before));
        const auto r2 = run(c2);
        REQUIRE(r1.size() == r2.size());
        for (std::size_t i = 0; i < r1.size(); ++i)
            CHECK(std::memcmp(r1[i].data(), r2[i].data(), r1[i].size() * sizeof(double)) == 0);
    }
}

}  // namespace
