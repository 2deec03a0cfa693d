// The pruner (pruner.hpp, presets.hpp, any_pruner.hpp): the four hooks with
// every preset, checkpoint/resume, the decision log and its JSON, data-parallel
// workers with a user all-reduce, and run-time composition from JSON.
#include <psap/any_pruner.hpp>
#include <psap/presets.hpp>
#include <psap/pruner.hpp>

#include <support/driver.hpp>
#include <support/mobilenet.hpp>
#include <support/model.hpp>
#include <support/random_net.hpp>
#include <support/seed.hpp>
#include <support/threading.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <barrier>
#include <limits>
#include <numeric>
#include <random>
#include <cmath>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

using psap::budget_kind;
using psap::index;
using namespace psap_test;
using net_t = psap::network<float>;

model_spec bn_spec(std::uint64_t seed) {
    random_options o;
    o.all_bn = true;
    o.gate_grad = true;
    return random_spec(seed, o);
}

TEST_CASE_TEMPLATE("the four hooks with every preset: budgets met, log and keep-lists consistent with the masks", P, preset_psap,
                   preset_static_gate, preset_sfp, preset_asfp, preset_fpgm, preset_l1, preset_slimming, preset_taylor,
                   preset_agp, preset_random) {
    for (std::uint64_t k = 0; k < 3; ++k) {
        const auto seed = psap_test::seed() + 800 + k;
        CAPTURE(seed);
        const auto spec = k == 2 ? random_spec(seed, {.gate_grad = true}) : bn_spec(seed);
        if (std::string(P::name) == "slimming" || std::string(P::name) == "taylor") {
            // global thresholds rank |gamma| or BN Taylor scores across groups: BN everywhere
            if (k == 2) continue;
        }
        model<float> m(spec);
        m.fill_random(seed);
        const psap::budget target{std::array{budget_kind::flops, budget_kind::params, budget_kind::filters}[k], 0.4};
        auto p = P::make(target, 8);
        const auto rec = run(p, m, {.grad_seed = seed, .epochs = 8});
        REQUIRE(p.log().size() == 8);
        for (std::size_t s = 0; s < p.log().size(); ++s) {
            const auto& e = p.log()[s];
            CAPTURE(s);
            CHECK(e.step == static_cast<index>(s));
            CHECK(e.epoch == double(s + 1));
            // achieved cost is the cost of the recorded masks
            std::vector<index> kept;
            index churn = 0;
            for (const auto& g : m.net().groups()) {
                const auto& mask = rec.masks[s].at(g.name);
                index pruned = 0;
                for (auto b : mask) pruned += b;
                kept.push_back(g.size - pruned);
            }
            for (const auto& d : e.groups) {
                CHECK(d.pruned == d.size - kept[static_cast<std::size_t>(m.net().find_group(d.group))]);
                churn += d.newly_pruned;
                if (!e.frozen) CHECK(d.pruned == d.target);
            }
            CHECK(e.churn() == churn);
            CHECK(e.achieved == p.costs().evaluate(kept));
            CHECK(e.reduction == doctest::Approx(p.costs().reduction(target.kind, kept)));
            if (!e.frozen) CHECK(e.reduction >= e.budget_now - 1e-12);
        }
        // every schedule reaches the full budget by the last epoch
        CHECK(p.log().back().reduction >= target.target - 1e-12);
        const auto res = p.finalize(m.net());
        REQUIRE(res.groups.size() == m.net().groups().size());
        std::vector<index> kept;
        for (std::size_t g = 0; g < res.groups.size(); ++g) {
            const auto& mask = p.groups()[g].pruned;
            std::vector<index> expect;
            for (std::size_t c = 0; c < mask.size(); ++c)
                if (!mask[c]) expect.push_back(static_cast<index>(c));
            CHECK(res.groups[g].kept == expect);
            CHECK(res.groups[g].group == m.net().groups()[g].name);
            kept.push_back(static_cast<index>(expect.size()));
        }
        CHECK(res.after == p.costs().evaluate(kept));
        CHECK(res.before == p.costs().full());
        CHECK(res.reduction(target.kind) >= target.target - 1e-12);
        CHECK(res.layers.size() == m.net().layers().size());
    }
}

TEST_CASE_TEMPLATE("depthwise members: every preset removes a channel's expand filter and depthwise filter together", P,
                   preset_psap, preset_static_gate, preset_sfp, preset_asfp, preset_fpgm, preset_l1, preset_slimming,
                   preset_taylor, preset_agp, preset_random) {
    const auto seed = psap_test::seed() + 850;
    CAPTURE(seed);
    model<float> m(inverted_residual_net({.blocks = 2, .gate_grad = true}));
    m.fill_random(seed);
    const psap::budget target{budget_kind::flops, 0.4};
    auto p = P::make(target, 8);
    run(p, m, {.grad_seed = seed, .epochs = 8});
    CHECK(p.log().back().reduction >= target.target - 1e-12);
    // A pruned channel is silenced in both members: its filter is zero
    // (hard, soft: the last step just zeroed it) or its BN gate is closed
    // (protective: gamma = beta = 0).
    const auto silenced = [&](const std::string& layer, index c) {
        auto& l = m.layer(layer);
        bool zero = true;
        for (index j = 0; j < l.fan_in(); ++j) zero = zero && l.weight(c, j) == 0.0f;
        const auto k = static_cast<std::size_t>(c);
        return zero || (l.gamma[k] == 0.0f && l.beta[k] == 0.0f);
    };
    const auto res = p.finalize(m.net());
    index pruned_total = 0;
    for (int b = 1; b <= 2; ++b) {
        const std::string blk = str("b", b, ".");
        const auto g = static_cast<std::size_t>(m.net().find_group(blk + "expanded"));
        const auto& mask = p.groups()[g].pruned;
        for (std::size_t c = 0; c < mask.size(); ++c) {
            if (!mask[c]) continue;
            CAPTURE(c);
            ++pruned_total;
            CHECK(silenced(blk + "expand", static_cast<index>(c)));
            CHECK(silenced(blk + "dw", static_cast<index>(c)));
        }
        // The compact widths: both members keep the group's channels, the
        // depthwise filters still read one channel each, the project conv
        // reads the kept ones.
        const auto kept = static_cast<index>(res.groups[g].kept.size());
        for (const auto& w : res.layers) {
            if (w.name == blk + "dw") CHECK((w.out_after == kept && w.in_after == 1));
            if (w.name == blk + "expand") CHECK(w.out_after == kept);
            if (w.name == blk + "project") CHECK(w.in_after == kept);
        }
    }
    CHECK(pruned_total > 0);
}

TEST_CASE_TEMPLATE("state()/load_state(): a run resumed at step k in a fresh pruner decides and logs as the uninterrupted run", P,
                   preset_psap, preset_static_gate, preset_sfp, preset_fpgm, preset_l1, preset_slimming, preset_taylor,
                   preset_agp, preset_random) {
    const auto seed = psap_test::seed() + 900;
    CAPTURE(seed);
    const auto spec = bn_spec(seed);
    const psap::budget target{budget_kind::flops, 0.5};
    const int epochs = 10;
    model<float> full(spec);
    full.fill_random(seed);
    auto p_full = P::make(target, epochs);
    const auto rec_full = run(p_full, full, {.grad_seed = seed, .epochs = epochs});

    for (int k : {1, 4, 7}) {
        CAPTURE(k);
        model<float> first(spec);
        first.fill_random(seed);
        auto p1 = P::make(target, epochs);
        run(p1, first, {.grad_seed = seed, .epochs = k});
        const auto blob = p1.state();

        model<float> resumed(spec);  // new storage: the resumed process reloads its weights
        resumed.copy_from(first);
        auto p2 = P::make(target, epochs);
        p2.load_state(resumed.net(), blob);
        CHECK(p2.steps_taken() == k);
        const auto rec2 = run(p2, resumed, {.grad_seed = seed, .epochs = epochs, .first_epoch = k});
        for (int s = k; s < epochs; ++s)
            CHECK(rec2.masks[static_cast<std::size_t>(s - k)] == rec_full.masks[static_cast<std::size_t>(s)]);
        CHECK(json_difference(nlohmann::json(p2.log()), nlohmann::json(p_full.log())) ==
              "");                         // the whole log, restored part included
        CHECK(resumed.same_values(full));  // bitwise: same snapshots, same restores
    }
}

TEST_CASE_TEMPLATE("a step that throws after scoring leaves nothing behind: retried, the run decides, logs and writes as one that "
                   "never failed",
                   P, preset_psap, preset_static_gate, preset_sfp, preset_fpgm, preset_l1, preset_slimming, preset_taylor,
                   preset_agp, preset_random) {
    const auto seed = psap_test::seed() + 950;
    CAPTURE(seed);
    const auto spec = bn_spec(seed);
    const psap::budget target{budget_kind::flops, 0.5};
    const int epochs = 8, k = 3;
    // With an all-reduce as two identical workers would give (every sum
    // doubled) a statistic merged twice shows in the state: the retried step
    // must merge once.
    for (bool reduce : {false, true}) {
        CAPTURE(reduce);
        const auto doubled = [](std::span<double> x) {
            for (double& v : x) v *= 2;
        };
        model<float> full(spec);
        full.fill_random(seed);
        auto p_full = P::make(target, epochs);
        if (reduce) p_full.set_all_reduce(doubled);
        const auto rec_full = run(p_full, full, {.grad_seed = seed, .epochs = epochs});

        model<float> m(spec);
        m.fill_random(seed);
        auto p = P::make(target, epochs);
        if (reduce) p.set_all_reduce(doubled);
        run(p, m, {.grad_seed = seed, .epochs = k});
        // Epoch k's training, then a step whose schedule cannot meet the budget:
        // it throws in plan(), after the restores and the scores.
        const double p_max = p.schedule().p_max;
        p.schedule().p_max = 0.01;
        CHECK_THROWS_AS(run(p, m, {.grad_seed = seed, .epochs = k + 1, .first_epoch = k}), psap::error);
        CHECK(p.steps_taken() == k);
        p.schedule().p_max = p_max;
        p.step(m.net(), k + 1);
        CHECK(masks_by_name(p, m.net()) == rec_full.masks[static_cast<std::size_t>(k)]);
        const auto rec = run(p, m, {.grad_seed = seed, .epochs = epochs, .first_epoch = k + 1});
        for (int s = k + 1; s < epochs; ++s)
            CHECK(rec.masks[static_cast<std::size_t>(s - k - 1)] == rec_full.masks[static_cast<std::size_t>(s)]);
        CHECK(json_difference(nlohmann::json(p.log()), nlohmann::json(p_full.log())) == "");
        CHECK(m.same_values(full));
        CHECK(p.state() == p_full.state());  // every statistic, bit for bit
    }
}

/// The same pruner with the finiteness checks off (pruner_options::check_finite).
template <class Pruner>
Pruner unchecked(const Pruner& p) {
    auto o = p.options();
    o.check_finite = false;
    auto q = p;  // the policies' configuration, copied
    return Pruner(o, q.schedule(), q.criterion(), q.protector(), q.reconstructor());
}

TEST_CASE_TEMPLATE("every preset decides, logs and writes the same with 1, 2 and 3 threads, every call threaded, checks on or off",
                   P, preset_psap, preset_static_gate, preset_sfp, preset_fpgm, preset_l1, preset_slimming, preset_taylor,
                   preset_agp, preset_random) {
    // min_work 0 threads every backend call and, where a layer is not scored
    // (the FC), scans its weights beside the decisions (pruner::decide_beside_scan).
    // Without the checks the step takes its other path at every thread count;
    // on finite inputs what the checks read may change no decision.
    const auto seed = psap_test::seed() + 950;
    CAPTURE(seed);
    const auto spec = bn_spec(seed);
    const psap::budget target{budget_kind::flops, 0.5};
    const int epochs = 8;
    model<float> one(spec);
    one.fill_random(seed);
    auto p1 = P::make(target, epochs);
    record r1;
    {
        const threading_scope ts(1, 0);
        r1 = run(p1, one, {.grad_seed = seed, .epochs = epochs});
    }
    for (const bool checks : {true, false})
        for (int threads : {1, 2, 3}) {
            if (checks && threads == 1) continue;  // the reference run
            CAPTURE(checks);
            CAPTURE(threads);
            const threading_scope ts(threads, 0);
            model<float> m(spec);
            m.fill_random(seed);
            auto p = checks ? P::make(target, epochs) : unchecked(P::make(target, epochs));
            REQUIRE(p.options().check_finite == checks);
            const auto r = run(p, m, {.grad_seed = seed, .epochs = epochs});
            CHECK(r.masks == r1.masks);
            CHECK(json_difference(r.log, r1.log) == "");
            CHECK(m.same_values(one));
        }
}

TEST_CASE("take_log(): the entries handed over at each step are the log an untouched pruner keeps; decisions do not change") {
    const auto seed = psap_test::seed() + 970;
    CAPTURE(seed);
    const auto spec = bn_spec(seed);
    const psap::budget target{budget_kind::flops, 0.5};
    const int epochs = 6;
    model<float> kept_model(spec), taken_model(spec);
    kept_model.fill_random(seed);
    taken_model.fill_random(seed);
    auto kept = preset_psap::make(target, epochs);
    auto taken = preset_psap::make(target, epochs);
    const auto r_kept = run(kept, kept_model, {.grad_seed = seed, .epochs = epochs});
    nlohmann::json streamed = nlohmann::json::array();
    const auto r_taken = run(taken, taken_model, {.grad_seed = seed, .epochs = epochs}, [&](int e) {
        auto entries = taken.take_log();
        CHECK(entries.size() == 1);
        CHECK(taken.log().empty());
        for (const auto& x : entries) {
            CHECK(x.step == e);
            streamed.push_back(x);
        }
    });
    CHECK(r_taken.masks == r_kept.masks);
    CHECK(kept.log().size() == static_cast<std::size_t>(epochs));
    CHECK(json_difference(streamed, nlohmann::json(kept.log())) == "");
    CHECK(taken_model.same_values(kept_model));
    CHECK(taken.steps_taken() == epochs);
    CHECK(taken.take_log().empty());
}

/// Seeded scores with many ties (four values), kept for the test to check.
struct tied_scores {
    std::uint64_t seed = 1;
    std::vector<std::vector<double>> last;
    template <class Net>
    void score(const Net&, const psap::step_context& ctx, std::span<std::vector<double>> out) {
        std::mt19937_64 g(seed + static_cast<std::uint64_t>(ctx.info.step));
        for (auto& s : out)
            for (auto& x : s) x = static_cast<double>(g() % 4);
        last.assign(out.begin(), out.end());
    }
};
/// Shields a seeded random set of active channels, up to size - q; restores nothing.
struct random_shield {
    std::uint64_t seed = 1;
    std::vector<std::vector<index>> last;
    template <class Net>
    void restores(const Net&, const psap::step_context&, std::span<std::vector<index>>) {}
    template <class Net>
    void shield(const Net&, const psap::step_context& ctx, std::span<const index> counts, std::span<std::vector<index>> out) {
        std::mt19937_64 g(seed + 7919 * static_cast<std::uint64_t>(ctx.info.step));
        for (std::size_t k = 0; k < out.size(); ++k) {
            const auto& st = ctx.groups[k];
            std::vector<index> active;
            for (index c = 0; c < st.size(); ++c)
                if (!st.pruned[static_cast<std::size_t>(c)]) active.push_back(c);
            std::shuffle(active.begin(), active.end(), g);
            const auto cap = static_cast<std::size_t>(std::min<index>(static_cast<index>(active.size()), st.size() - counts[k]));
            active.resize(static_cast<std::size_t>(g() % (cap + 1)));
            out[k] = active;
        }
        last.assign(out.begin(), out.end());
    }
};

TEST_CASE("selection with shielded channels and tied scores: the q lowest (score, index) of the rest; protected_effective "
          "counts the shielded among the q lowest of all, as a full sort gives") {
    const auto seed = psap_test::seed() + 950;
    CAPTURE(seed);
    model<float> m(bn_spec(seed));
    m.fill_random(seed);
    psap::uniform sched;
    sched.ramp = psap::ramp_shape::linear;
    psap::pruner<psap::uniform, tied_scores, random_shield, psap::hard> p({{budget_kind::filters, 0.6}, 12}, sched,
                                                                          tied_scores{seed, {}}, random_shield{seed + 1, {}}, {});
    index shielded_total = 0, effective_total = 0;
    for (int epoch = 1; epoch <= 10; ++epoch) {
        const auto& e = p.step(m.net(), epoch);
        const auto& scores = p.criterion().last;
        const auto& shields = p.protector().last;
        for (std::size_t k = 0; k < e.groups.size(); ++k) {
            CAPTURE(epoch);
            CAPTURE(k);
            const auto& d = e.groups[k];
            const auto& sc = scores[k];
            const auto n = static_cast<index>(sc.size());
            std::vector<index> all(static_cast<std::size_t>(n)), rest;
            std::iota(all.begin(), all.end(), index{0});
            std::stable_sort(all.begin(), all.end(), [&](index a, index b) { return sc[static_cast<std::size_t>(a)] < sc[static_cast<std::size_t>(b)]; });
            const auto is_shielded = [&](index c) { return std::find(shields[k].begin(), shields[k].end(), c) != shields[k].end(); };
            for (index c : all)
                if (!is_shielded(c)) rest.push_back(c);
            std::vector<std::uint8_t> want(static_cast<std::size_t>(n), 0);
            for (index j = 0; j < d.target; ++j) want[static_cast<std::size_t>(rest[static_cast<std::size_t>(j)])] = 1;
            CHECK(p.groups()[k].pruned == want);
            index eff = 0;
            for (index j = 0; j < d.target; ++j) eff += is_shielded(all[static_cast<std::size_t>(j)]);
            CHECK(d.protected_count == static_cast<index>(shields[k].size()));
            CHECK(d.protected_effective == eff);
            shielded_total += d.protected_count;
            effective_total += eff;
        }
    }
    MESSAGE("shielded " << shielded_total << ", of them effective " << effective_total);
    CHECK(effective_total > 0);  // the case is not vacuous
    CHECK(effective_total < shielded_total);
}

/// PSAP's pieces with hand-set parameters: uniform allocation at 40% of filters,
/// restores and protection allowed up to min(q, N - q).
using hand_pruner = psap::pruner<psap::adaptive_sparsity, psap::l2_norm, psap::gradient_pulse, psap::protective>;
hand_pruner make_hand_pruner() {
    psap::adaptive_sparsity s;
    s.ramp = psap::ramp_shape::constant;
    s.allocation = psap::adaptive_sparsity::rule::uniform;
    psap::gradient_pulse g;
    g.restore_fraction = 1;
    g.rho = 1;
    return hand_pruner({{budget_kind::filters, 0.4}, 10}, s, psap::l2_norm{.fold_bn = true}, g, psap::protective{});
}

TEST_CASE("the decision log on a hand case: churn, restored, protected, protected_effective, achieved cost, JSON") {
    // One BN conv of 10 channels, unit-norm filters, gamma_i = 0.1 (i + 1): BN-folded scores rise with i.
    layer_spec l{
        .name = "conv", .out = 10, .in = 4, .kernel_area = 9, .positions = 16, .bias = false, .bn = true, .gate_grad = true};
    model<float> m({{l}, {{"g", 10, {{"conv", 0}}, {}}}});
    auto& c = m.layer("conv");
    for (index f = 0; f < 10; ++f) {
        for (index j = 0; j < c.fan_in(); ++j) c.weight(f, j) = j == f % c.fan_in() ? 1.0f : 0.0f;
        c.gamma[static_cast<std::size_t>(f)] = 0.1f * static_cast<float>(f + 1);
        c.beta[static_cast<std::size_t>(f)] = 0.05f * static_cast<float>(f);
    }
    auto p = make_hand_pruner();

    // step 1: nothing observed -> no protection; prune the 4 lowest: 0, 1, 2, 3
    auto e1 = p.step(m.net(), 1);
    REQUIRE(e1.groups.size() == 1);
    CHECK(e1.groups[0].newly_pruned == 4);
    CHECK(e1.churn() == 4);
    CHECK(e1.groups[0].restored == 0);
    CHECK(e1.groups[0].protected_count == 0);
    CHECK(e1.groups[0].target == 4);
    CHECK(p.groups()[0].pruned == std::vector<std::uint8_t>{1, 1, 1, 1, 0, 0, 0, 0, 0, 0});
    // 6 channels of 4*9 weights and 2 BN parameters each, at 16 positions
    CHECK(e1.achieved == psap::cost{6 * 36 * 16, 6 * 36 + 6 * 2, 6});
    CHECK(e1.reduction == doctest::Approx(0.4));
    CHECK(c.gamma[1] == 0);  // gated

    // observe: gated channel 1 pulses (10 > 3 * median 1 of the active), active channel 4 (the next
    // lowest score) is strong (10) and gets shielded; everything else 1.
    for (int it = 0; it < 3; ++it) {
        std::fill(c.gate.begin(), c.gate.end(), 1.0f);
        c.gate[1] = 10;
        c.gate[4] = it % 2 ? -10.0f : 10.0f;
        p.observe(m.net());
    }
    auto e2 = p.step(m.net(), 2);
    const auto& d = e2.groups[0];
    // restored {1} (cap min(4, 4, 6)); shielded {4} (cap min(4, 6) - 1 restore); the 4 lowest of the rest:
    // gated 0, 2, 3 (score 0) and 5 -> churn 1. Without the shield 4 would have gone: effective 1.
    CHECK(d.restored == 1);
    CHECK(d.pulses == 1);
    CHECK(d.protected_count == 1);
    CHECK(d.protected_effective == 1);
    CHECK(d.newly_pruned == 1);
    CHECK(d.released == 0);
    CHECK(d.pruned == 4);
    CHECK(e2.churn() == 1);
    CHECK(d.pressure == doctest::Approx(0.1));
    CHECK(p.groups()[0].pruned == std::vector<std::uint8_t>{1, 0, 1, 1, 0, 1, 0, 0, 0, 0});
    CHECK(c.gamma[1] == doctest::Approx(0.2));  // restored from the snapshot
    CHECK(c.beta[1] == doctest::Approx(0.05));
    CHECK(c.gamma[5] == 0);
    CHECK(e2.achieved == e1.achieved);

    // JSON: every field under its documented key, and back
    const nlohmann::json j = e2;
    CHECK(j.at("step") == 1);
    CHECK(j.at("epoch") == 2.0);
    CHECK(j.at("churn") == 1);
    CHECK(j.at("macs") == 6 * 36 * 16);
    CHECK(j.at("params") == 6 * 36 + 12);
    CHECK(j.at("filters") == 6);
    CHECK(j.at("relaxed") == false);
    CHECK(j.at("frozen") == false);
    const auto& jg = j.at("groups").at(0);
    CHECK(jg.at("group") == "g");
    CHECK(jg.at("restored") == 1);
    CHECK(jg.at("protected") == 1);
    CHECK(jg.at("protected_effective") == 1);
    CHECK(jg.at("newly_pruned") == 1);
    CHECK(jg.at("pulses") == 1);
    CHECK(jg.at("pressure") == doctest::Approx(0.1));
    CHECK(jg.at("sparsity").is_number());
    psap::step_log back = j.get<psap::step_log>();
    CHECK(nlohmann::json(back) == j);
    CHECK(back.churn() == 1);
    CHECK(back.groups[0].protected_effective == 1);

    SUBCASE("a schedule without a sparsity signal logs null") {
        auto q = psap::presets::sfp({budget_kind::filters, 0.4}, 10);
        const nlohmann::json js = q.step(m.net(), 1);
        CHECK(js.at("groups").at(0).at("sparsity").is_null());
        CHECK(js.at("mu").is_number());
        CHECK(nlohmann::json(js.get<psap::step_log>()) == js);
    }
}

TEST_CASE("a budget jump beyond the rate limit relaxes it for that step, and the log says so") {
    layer_spec l{.name = "conv", .out = 20, .in = 2, .kernel_area = 1, .positions = 1, .bias = false, .bn = true};
    model<float> m({{l}, {{"g", 20, {{"conv", 0}}, {}}}});
    m.fill_random(psap_test::seed());
    psap::adaptive_sparsity s;
    s.ramp = psap::ramp_shape::linear;
    s.ramp_end = 1;
    psap::pruner<psap::adaptive_sparsity, psap::l2_norm, psap::no_protection, psap::protective> p(
        {{budget_kind::filters, 0.6}, 10}, s);
    const auto e1 = p.step(m.net(), 1);  // B = 0.06: 2 of 20
    CHECK_FALSE(e1.relaxed);
    CHECK(e1.groups[0].pruned == 2);
    const auto e2 = p.step(m.net(), 2);  // B = 0.12: ratio 0.1 -> 0.15, within 0.1
    CHECK_FALSE(e2.relaxed);
    const auto e3 = p.step(m.net(), 10);  // B = 0.6: ratio 0.15 -> 0.6 needs the limit lifted
    CHECK(e3.relaxed);
    CHECK(e3.groups[0].pruned == 12);
    CHECK(nlohmann::json(e3).at("relaxed") == true);
}

/// A collective for two threads: each worker deposits its buffer, both sum them in the same order.
struct two_worker_all_reduce {
    std::barrier<> sync{2};
    std::vector<double> slot[2];
    void operator()(int w, std::span<double> buf) {
        slot[w].assign(buf.begin(), buf.end());
        sync.arrive_and_wait();
        for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = slot[0][i] + slot[1][i];
        sync.arrive_and_wait();
    }
};

TEST_CASE_TEMPLATE("data-parallel: two workers with different gradients and a summing all-reduce take identical decisions", P,
                   preset_psap, preset_taylor) {
    const auto seed = psap_test::seed() + 1100;
    CAPTURE(seed);
    const auto spec = bn_spec(seed);
    const psap::budget target{budget_kind::flops, 0.5};
    const int epochs = 8, iterations = 4;

    auto simulate = [&](bool reduce) {
        model<float> a(spec), b(spec), avg(spec);
        a.fill_random(seed);
        b.copy_from(a);
        auto pa = P::make(target, epochs), pb = P::make(target, epochs);
        two_worker_all_reduce coll;
        if (reduce) {
            pa.set_all_reduce([&](std::span<double> x) { coll(0, x); });
            pb.set_all_reduce([&](std::span<double> x) { coll(1, x); });
        }
        std::vector<record> out(2);
        for (int e = 0; e < epochs; ++e) {
            for (int it = 0; it < iterations; ++it) {
                a.fill_grads(seed * 2, e * iterations + it, 0.05);      // worker A's batch
                b.fill_grads(seed * 2 + 1, e * iterations + it, 0.05);  // worker B's batch
                pa.observe(a.net());
                pb.observe(b.net());
                // the framework averages the gradients for the optimizer: weights stay in sync
                for (auto& lp : a.layers()) {
                    auto& lb = b.layer(lp->spec.name);
                    for (auto [x, y] :
                         {std::pair{&lp->gw, &lb.gw}, {&lp->gb, &lb.gb}, {&lp->ggamma, &lb.ggamma}, {&lp->gbeta, &lb.gbeta}})
                        for (std::size_t i = 0; i < x->size(); ++i) (*x)[i] = (*y)[i] = 0.5f * ((*x)[i] + (*y)[i]);
                }
                a.sgd(0.05);
                b.sgd(0.05);
                pa.after_update(a.net());
                pb.after_update(b.net());
            }
            // step() runs concurrently on both workers, as it would in two processes
            std::thread ta([&] { pa.step(a.net(), e + 1); });
            std::thread tb([&] { pb.step(b.net(), e + 1); });
            ta.join();
            tb.join();
            out[0].masks.push_back(masks_by_name(pa, a.net()));
            out[1].masks.push_back(masks_by_name(pb, b.net()));
        }
        out[0].log = pa.log();
        out[1].log = pb.log();
        return out;
    };
    const auto with = simulate(true);
    CHECK(with[0].masks == with[1].masks);
    CHECK(json_difference(with[0].log, with[1].log) == "");
    // Without the all-reduce each worker decides from its own gradients, and they diverge:
    // the equality above is the all-reduce's doing.
    const auto without = simulate(false);
    CHECK(without[0].masks != without[1].masks);
}

TEST_CASE_TEMPLATE("make_pruner from a preset name decides exactly as the static composition", P, preset_psap, preset_static_gate,
                   preset_sfp, preset_asfp, preset_fpgm, preset_l1, preset_slimming, preset_taylor, preset_agp, preset_random) {
    const auto seed = psap_test::seed() + 1200;
    const auto spec = bn_spec(seed);
    model<float> m1(spec), m2(spec);
    m1.fill_random(seed);
    m2.fill_random(seed);
    const psap::budget target{budget_kind::params, 0.45};
    auto stat = P::make(target, 8);
    auto dyn = psap::make_pruner({{"preset", P::name}, {"budget", {{"kind", "params"}, {"target", 0.45}}}, {"total_epochs", 8}});
    CHECK(dyn.options().final_phase == stat.options().final_phase);
    const auto r1 = run(stat, m1, {.grad_seed = seed});
    const auto r2 = run(dyn, m2, {.grad_seed = seed});
    CHECK(r1.masks == r2.masks);
    CHECK(json_difference(r1.log, r2.log) == "");
    CHECK(m1.same_values(m2));
}

TEST_CASE("make_pruner: overrides merge into the preset, names replace, and mistakes are errors that list the valid choices") {
    auto p = psap::make_pruner({{"preset", "psap"}, {"budget", 0.3}, {"schedule", {{"eta", 0.3}}}, {"keep_multiple", 2}});
    auto d = psap::describe(p);
    CHECK(d.at("schedule").at("name") == "adaptive_sparsity");
    CHECK(d.at("schedule").at("eta") == 0.3);
    CHECK(d.at("schedule").at("alpha") == 0.2);  // the preset's other values stay
    CHECK(d.at("criterion").at("fold_bn") == true);
    CHECK(d.at("budget").at("target") == 0.3);
    CHECK(d.at("budget").at("kind") == "flops");
    CHECK(d.at("keep_multiple") == 2);
    CHECK(d.at("final_phase") == 0.25);

    p = psap::make_pruner({{"preset", "psap"}, {"criterion", "fpgm"}, {"protect", {{"name", "gradient_pulse"}, {"kappa", 5}}}});
    d = psap::describe(p);
    CHECK(d.at("criterion").at("name") == "fpgm");
    CHECK(d.at("protect").at("kappa") == 5.0);
    CHECK(d.at("protect").at("window") == 20);

    p = psap::make_pruner({{"schedule", "uniform"}, {"criterion", "l1_norm"}, {"protect", "none"}, {"reconstruct", "hard"}});
    CHECK(psap::describe(p).at("reconstruct").at("name") == "hard");

    auto fails = [](const nlohmann::json& cfg, std::initializer_list<const char*> fragments) {
        CAPTURE(cfg.dump());
        try {
            (void)psap::make_pruner(cfg);
            FAIL("accepted");
        } catch (const psap::error& e) {
            const std::string msg = e.what();
            for (const char* f : fragments) {
                CAPTURE(msg);
                CHECK_MESSAGE(msg.find(f) != std::string::npos, f);
            }
        }
    };
    fails({{"preset", "psap"}, {"epochs", 3}}, {"unknown key 'epochs'", "total_epochs"});
    fails({{"preset", "psap"}, {"schedule", {{"etta", 0.3}}}}, {"no parameter 'etta'", "eta", "alpha"});
    fails({{"preset", "psap"}, {"criterion", "l3_norm"}}, {"unknown criterion 'l3_norm'", "fpgm", "l2_norm"});
    fails({{"preset", "psap"}, {"schedule", {{"eta", "high"}}}}, {"'eta'", "must be a number"});
    fails({{"preset", "psap"}, {"protect", {{"restore", 1}}}}, {"'restore'", "true or false"});
    fails({{"preset", "psap"}, {"schedule", {{"allocation", "greedy"}}}}, {"greedy", "leaky"});
    fails({{"preset", "sfp2"}}, {"unknown preset 'sfp2'", "psap", "slimming"});
    fails({{"criterion", "fpgm"}}, {"no schedule given"});
    fails({{"preset", "psap"}, {"budget", {{"kind", "latency"}, {"target", 0.5}}}}, {"latency"});
    fails({{"preset", "psap"}, {"budget", 1.2}}, {"outside [0, 1)"});
    fails(nlohmann::json::array(), {"JSON object"});
    // Every top-level value of the wrong type or shape names its key.
    fails({{"preset", "psap"}, {"total_epochs", "30"}}, {"'total_epochs'", "must be a number", "\"30\""});
    fails({{"preset", 3}}, {"'preset'", "must be a string"});
    fails({{"preset", "psap"}, {"check_finite", 1}}, {"'check_finite'", "true or false"});
    fails({{"preset", "psap"}, {"budget", "0.5"}}, {"'budget'", "a number", "or an object"});
    fails({{"preset", "psap"}, {"budget", {{"kind", "flops"}, {"traget", 0.5}}}}, {"unknown key 'traget' in 'budget'", "target"});
    fails({{"preset", "psap"}, {"budget", {{"knd", "params"}, {"target", 0.5}}}}, {"unknown key 'knd' in 'budget'", "kind"});
    fails({{"preset", "psap"}, {"budget", {{"kind", "params"}}}}, {"'budget' has no 'target'"});
    fails({{"preset", "psap"}, {"budget", {{"kind", 2}, {"target", 0.5}}}}, {"'budget.kind'", "must be a string"});
    fails({{"preset", "psap"}, {"keep_multiple", 2.7}}, {"'keep_multiple'", "an integer"});
    fails({{"preset", "psap"}, {"keep_multiple", 1e300}}, {"'keep_multiple'", "an integer"});
    fails({{"preset", "psap"}, {"keep_multiple", 18446744073709551615ull}}, {"'keep_multiple'", "out of range"});
    fails({{"preset", "psap"}, {"keep_multiple", 0}}, {"keep_multiple 0", ">= 1"});
    fails({{"preset", "psap"}, {"criterion", {{"name", 7}}}}, {"criterion", "needs a \"name\""});
}

TEST_CASE("keep_multiple beyond every group's size keeps every channel, without overflow") {
    // pruned_count rounds the kept count up to the multiple: with a multiple
    // larger than the group nothing can be pruned, whatever the multiple.
    for (index multiple : {index{17}, index{1} << 40, std::numeric_limits<index>::max()}) {
        CAPTURE(multiple);
        CHECK(psap::pruned_count(0.5, 16, multiple) == 0);
        CHECK(psap::pruned_count(0.99, 16, multiple) == 0);
    }
    // and the rounding itself, by hand: 16 channels, half pruned keeps 8
    CHECK(psap::pruned_count(0.5, 16, 8) == 8);   // 8 kept, a multiple already
    CHECK(psap::pruned_count(0.6, 16, 8) == 8);   // 7 kept -> 8
    CHECK(psap::pruned_count(0.95, 16, 8) == 8);  // 1 kept -> 8
    CHECK(psap::pruned_count(0.6, 12, 8) == 4);   // 5 kept -> 8
    CHECK(psap::pruned_count(0.5, 12, 16) == 0);  // 6 kept -> 16, more than the group: all 12 kept
    CHECK(psap::pruned_count(0.99, 16, 1) == 15);  // at least one channel kept
    // A pruner with such a multiple cannot remove anything: the budget is unreachable, said so.
    model<float> m(bn_spec(psap_test::seed() + 990));
    m.fill_random(psap_test::seed() + 990);
    auto p = psap::make_pruner({{"preset", "sfp"}, {"budget", 0.3}, {"keep_multiple", std::numeric_limits<index>::max()}});
    try {
        p.step(m.net(), 1);
        FAIL("a budget that no count can reach was accepted");
    } catch (const psap::error& e) {
        CHECK(std::string(e.what()).find("cannot be met") != std::string::npos);
    }
}

}  // namespace
