// Invariants of whole runs over randomised networks (several seeds, every
// preset): budgets met and not overshot by more than one channel per group,
// protected channels never pruned, restores bit-exact, coupled channels pruned
// together, decisions reproducible and independent of the order layers and
// groups were described in, kept counts rounded to keep_multiple.
#include <psap/any_pruner.hpp>
#include <psap/presets.hpp>

#include <support/driver.hpp>
#include <support/model.hpp>
#include <support/random_net.hpp>
#include <support/seed.hpp>

#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using psap::budget_kind;
using psap::index;
using namespace psap_test;
using net_t = psap::network<float>;

constexpr std::uint64_t seeds = 4;

model_spec spec_for(std::uint64_t seed, bool all_bn) {
    random_options o;
    o.all_bn = all_bn;
    o.gate_grad = true;
    return random_spec(seed, o);
}
/// slimming and taylor rank BN quantities across groups: they need batch norm everywhere.
bool needs_bn(const std::string& preset) { return preset == "slimming" || preset == "taylor"; }

/// A preset through make_pruner: one pruner type for every preset keeps this TU's compile time
/// down; pruner_test.cpp checks that it decides exactly as the static composition.
psap::any_pruner<net_t> make(std::string_view preset, psap::budget b, double epochs) {
    return psap::make_pruner(
        {{"preset", preset}, {"budget", {{"kind", psap::to_string(b.kind)}, {"target", b.target}}}, {"total_epochs", epochs}});
}

psap::budget budget_for(std::uint64_t k) {
    return {std::array{budget_kind::flops, budget_kind::params, budget_kind::filters}[k % 3], 0.3 + 0.05 * double(k % 5)};
}

TEST_CASE("budgets: achieved >= B_t at every step, and within one channel per group of it for uniform and global schedules") {
    for (const std::string_view preset : psap::presets::names) {
        const std::string name(preset);
        CAPTURE(name);
        const bool tight = name != "psap" && name != "static_gate";  // PSAP's rate limit may hold a ratio above B_t
        for (std::uint64_t k = 0; k < seeds; ++k) {
            const auto seed = psap_test::seed() + 1300 + k;
            CAPTURE(seed);
            model<float> m(spec_for(seed, needs_bn(name) || k % 2 == 0));
            m.fill_random(seed);
            const auto target = budget_for(k);
            auto p = make(name, target, 10);
            run(p, m, {.grad_seed = seed, .epochs = 10, .iterations = 3}, [&](int) {
                const auto& e = p.log().back();
                CAPTURE(e.step);
                if (e.frozen) return;
                CHECK(e.reduction >= e.budget_now - 1e-12);
                if (!tight || e.budget_now <= 0) return;
                std::vector<index> kept;
                for (const auto& g : p.groups()) kept.push_back(g.size() - g.pruned_count() + (g.pruned_count() > 0 ? 1 : 0));
                CHECK(p.costs().reduction(target.kind, kept) < e.budget_now);
            });
            CHECK(p.log().back().reduction >= target.target - 1e-12);
        }
    }
}

/// gradient_pulse that records what it restored and shielded at the last step.
struct spy_pulse : psap::gradient_pulse {
    std::vector<std::vector<index>> restored, shielded;
    template <class Net>
    void restores(const Net& net, const psap::step_context& ctx, std::span<std::vector<index>> out) {
        psap::gradient_pulse::restores(net, ctx, out);
        restored.assign(out.begin(), out.end());
    }
    template <class Net>
    void shield(const Net& net, const psap::step_context& ctx, std::span<const index> q, std::span<std::vector<index>> out) {
        psap::gradient_pulse::shield(net, ctx, q, out);
        shielded.assign(out.begin(), out.end());
    }
};

/// Every value a channel of group g owns (filter rows, bias, gamma, beta of every member).
std::vector<float> channel_values(const net_t& net, index g, index c) {
    std::vector<float> v;
    for (std::size_t mi = 0; mi < net.groups()[static_cast<std::size_t>(g)].members.size(); ++mi) {
        const auto mv = psap::member_of(net, g, mi);
        for (index j = 0; j < mv.weight.cols(); ++j) v.push_back(mv.weight(c, j));
        if (!mv.bias.empty()) v.push_back(mv.bias[c]);
        if (mv.bn) v.push_back(mv.bn->gamma[c]), v.push_back(mv.bn->beta[c]);
    }
    return v;
}
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Whether member m's channel c shows the pruned state the reconstruction policy `rec` leaves.
bool looks_pruned(const psap::member_views<float, psap::host_memory>& mv, index c, const std::string& rec) {
    auto zero_row = [&] {
        for (index j = 0; j < mv.weight.cols(); ++j)
            if (mv.weight(c, j) != 0) return false;
        return mv.bias.empty() || mv.bias[c] == 0;
    };
    auto zero_bn = [&] { return mv.bn->gamma[c] == 0 && mv.bn->beta[c] == 0; };
    if (rec == "protective") return mv.bn ? zero_bn() : zero_row();
    if (rec == "hard") return zero_row() && (!mv.bn || zero_bn());
    return zero_row();  // soft, right after a step
}

template <class Reconstruct>
void protection_run(std::uint64_t seed, const std::string& rec_name) {
    CAPTURE(seed);
    CAPTURE(rec_name);
    model<float> m(spec_for(seed, seed % 2 == 0));
    m.fill_random(seed);
    spy_pulse sp;
    sp.kappa = 2;  // random gradients with a few 20x channels: plenty of pulses
    sp.kappa_keep = 2;
    sp.restore_fraction = 0.5;
    psap::adaptive_sparsity sched;
    psap::pruner<psap::adaptive_sparsity, psap::l2_norm, spy_pulse, Reconstruct> p({budget_for(seed), 12, 0.2}, sched,
                                                                                   psap::l2_norm{.fold_bn = true}, sp);
    const auto& net = m.net();
    const std::size_t n = net.groups().size();
    std::map<std::pair<std::size_t, index>, std::vector<float>> at_prune;  // values when the channel was pruned
    std::vector<std::vector<std::uint8_t>> before(n);
    model<float> shadow(m.spec());
    int restores_seen = 0, shields_seen = 0, coupled_seen = 0;
    const int epochs = 12, iterations = 3;
    for (int e = 0; e < epochs; ++e) {
        for (int it = 0; it < iterations; ++it) {
            m.fill_grads(seed, e * iterations + it, 0.05);
            p.observe(net);
            m.sgd(0.05);
            p.after_update(net);
        }
        for (std::size_t g = 0; g < n; ++g) before[g] = p.groups().empty() ? std::vector<std::uint8_t>{} : p.groups()[g].pruned;
        shadow.copy_from(m);
        const auto& entry = p.step(net, e + 1);
        const auto& spy = p.protector();
        for (std::size_t g = 0; g < n; ++g) {
            CAPTURE(net.groups()[g].name);
            const auto& now = p.groups()[g].pruned;
            if (before[g].empty()) before[g].assign(now.size(), 0);
            // protected channels are never pruned; restored ones (after the pruner's trim) are active
            if (!entry.frozen) {
                for (index c : spy.shielded[g]) CHECK(now[static_cast<std::size_t>(c)] == 0);
                shields_seen += static_cast<int>(spy.shielded[g].size());
                const auto kept_restores = static_cast<std::size_t>(entry.groups[g].restored);
                for (std::size_t i = 0; i < kept_restores; ++i) CHECK(now[static_cast<std::size_t>(spy.restored[g][i])] == 0);
            }
            for (index c = 0; c < static_cast<index>(now.size()); ++c) {
                const auto key = std::pair{g, c};
                const bool was = before[g][static_cast<std::size_t>(c)], is = now[static_cast<std::size_t>(c)];
                if (!was && is) at_prune[key] = channel_values(shadow.net(), static_cast<index>(g), c);
                if (was && !is) {  // restored or released: exactly the values it had when pruned
                    CHECK(same_bits(channel_values(net, static_cast<index>(g), c), at_prune.at(key)));
                    ++restores_seen;
                }
                // every member shows the channel's state (coupled channels pruned together)
                for (std::size_t mi = 0; mi < net.groups()[g].members.size(); ++mi) {
                    CHECK(looks_pruned(psap::member_of(net, static_cast<index>(g), mi), c, rec_name) == is);
                    if (net.groups()[g].members.size() > 1 && is) ++coupled_seen;
                }
            }
        }
    }
    // the run exercised what it checks (seeds with pair groups exercise the coupling)
    CHECK(restores_seen > 0);
    CHECK(shields_seen > 0);
    MESSAGE("restores ", restores_seen, ", shields ", shields_seen, ", coupled member checks ", coupled_seen);
}

TEST_CASE("protected channels are never pruned, restores return exactly the snapshot, coupled channels are pruned together") {
    for (std::uint64_t k = 0; k < seeds; ++k) {
        protection_run<psap::protective>(psap_test::seed() + 1400 + k, "protective");
        protection_run<psap::hard>(psap_test::seed() + 1400 + k, "hard");
    }
}

TEST_CASE("coupled channels of multi-member groups are pruned together with every preset") {
    for (const std::string_view preset : psap::presets::names) {
        const std::string name(preset);
        CAPTURE(name);
        int pairs = 0;
        for (std::uint64_t k = 0; k < seeds; ++k) {
            const auto seed = psap_test::seed() + 1500 + k;
            CAPTURE(seed);
            random_options o;
            o.all_bn = true;
            o.pair_probability = 0.8;
            model<float> m(random_spec(seed, o));
            m.fill_random(seed);
            auto p = make(name, budget_for(k), 6);
            const std::string rec = p.reconstructor().config().at("name");
            run(p, m, {.grad_seed = seed, .epochs = 6, .iterations = 2}, [&](int) {
                const auto& net = m.net();
                for (std::size_t g = 0; g < net.groups().size(); ++g) {
                    if (net.groups()[g].members.size() < 2) continue;
                    for (index c = 0; c < net.groups()[g].size; ++c) {
                        const bool is = p.groups()[g].pruned[static_cast<std::size_t>(c)];
                        for (std::size_t mi = 0; mi < net.groups()[g].members.size(); ++mi)
                            CHECK(looks_pruned(psap::member_of(net, static_cast<index>(g), mi), c, rec) == is);
                        pairs += is;
                    }
                }
            });
        }
        CHECK(pairs > 0);
    }
}

TEST_CASE("identical seeds give identical decisions; so does describing layers and groups in another order") {
    for (const std::string_view preset : psap::presets::names) {
        const std::string name(preset);
        CAPTURE(name);
        for (std::uint64_t k = 0; k < seeds; ++k) {
            const auto seed = psap_test::seed() + 1600 + k;
            CAPTURE(seed);
            const auto spec = spec_for(seed, true);
            rng r(seed);
            model<float> a(spec), b(spec), c(spec, permutation(spec.layers.size(), r), permutation(spec.groups.size(), r), true);
            for (auto* m : {&a, &b, &c}) m->fill_random(seed);
            const auto target = budget_for(k);
            auto pa = make(name, target, 8), pb = make(name, target, 8), pc = make(name, target, 8);
            const auto ra = run(pa, a, {.grad_seed = seed}), rb = run(pb, b, {.grad_seed = seed}),
                       rc = run(pc, c, {.grad_seed = seed});
            CHECK(ra.masks == rb.masks);
            CHECK(json_difference(ra.log, rb.log) == "");
            CHECK(ra.masks == rc.masks);  // compared by group name
            for (std::size_t s = 0; s < ra.log.size(); ++s) {
                CHECK(ra.log[s].at("macs") == rc.log[s].at("macs"));
                CHECK(ra.log[s].at("params") == rc.log[s].at("params"));
            }
            CHECK(a.same_values(c));  // by layer name
        }
    }
}

TEST_CASE("keep_multiple: every group keeps a multiple of it (or all its channels), with every preset") {
    for (auto name : psap::presets::names) {
        CAPTURE(name);
        for (std::uint64_t k = 0; k < 3; ++k) {
            const auto seed = psap_test::seed() + 1700 + k;
            CAPTURE(seed);
            random_options o;
            o.all_bn = true;
            o.gate_grad = true;
            o.min_width = 8;
            o.max_width = 40;
            model<float> m(random_spec(seed, o));
            m.fill_random(seed);
            const index multiple = k == 2 ? 8 : 4;
            auto p = psap::make_pruner({{"preset", name},
                                        {"budget", {{"kind", "flops"}, {"target", 0.4}}},
                                        {"total_epochs", 6},
                                        {"keep_multiple", multiple}});
            run(p, m, {.grad_seed = seed, .epochs = 6, .iterations = 2}, [&](int) {
                const auto& e = p.log().back();
                for (const auto& g : p.groups()) {
                    const index kept = g.size() - g.pruned_count();
                    CHECK((kept % multiple == 0 || kept == g.size()));
                }
                if (!e.frozen) CHECK(e.reduction >= e.budget_now - 1e-12);
            });
        }
    }
}

}  // namespace
