// Bad input reaches the user as a psap::error whose message names the layer
// or group, the value and the fix: non-finite weights and gradients, options
// and ratios outside their ranges, invalid groups, budgets that cannot be met,
// misbehaving policies, and state blobs from another network or damaged.
#include <psap/any_pruner.hpp>
#include <psap/presets.hpp>
#include <psap/pruner.hpp>

#include <support/driver.hpp>
#include <support/model.hpp>
#include <support/random_net.hpp>
#include <support/seed.hpp>
#include <support/threading.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace {

using psap::budget_kind;
using psap::index;
using namespace psap_test;
using net_t = psap::network<float>;

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const psap::error& e) {
        return e.what();
    }
    return "(no psap::error)";
}
#define CHECK_ERROR(expr, ...)                                               \
    do {                                                                     \
        const std::string msg_ = error_of([&] { (void)(expr); });            \
        for (const char* f_ : {__VA_ARGS__}) {                               \
            INFO("message: ", msg_);                                         \
            CHECK_MESSAGE(msg_.find(f_) != std::string::npos, "'", f_, "'"); \
        }                                                                    \
    } while (0)

/// conv "stem" (BN) -> conv "body" (no BN, bias) -> fc; groups "stem_out", "body_out".
model_spec small_spec() {
    layer_spec stem{
        .name = "stem", .out = 8, .in = 3, .kernel_area = 9, .positions = 64, .bias = false, .bn = true, .gate_grad = true};
    layer_spec body{.name = "body", .out = 6, .in = 8, .kernel_area = 9, .positions = 16, .bias = true, .bn = false};
    layer_spec fc{.name = "fc", .out = 10, .in = 6, .kernel_area = 1, .positions = 1, .bias = true, .bn = false};
    return {{stem, body, fc}, {{"stem_out", 8, {{"stem", 0}}, {{"body", 0}}}, {"body_out", 6, {{"body", 0}}, {{"fc", 0}}}}};
}
/// The same with batch norm after "body" too (slimming ranks |gamma| in every group).
model_spec small_bn_spec() {
    auto s = small_spec();
    s.layers[1].bn = true;
    return s;
}

TEST_CASE("NaN or Inf weights are rejected at step(), naming the layer and the filter") {
    model<float> m(small_spec());
    m.fill_random(psap_test::seed());
    auto p = psap::presets::psap({budget_kind::flops, 0.3}, 10);
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    SUBCASE("conv weight") {
        m.layer("body").weight(4, 2) = nan;
        CHECK_ERROR(p.step(m.net(), 1), "'body'", "NaN or Inf weight", "filter 4", "learning rate");
    }
    SUBCASE("a frozen step (no scores computed) still scans the scored layers") {
        m.layer("body").weight(4, 2) = inf;
        CHECK_ERROR(p.step(m.net(), 9), "'body'", "NaN or Inf weight", "filter 4");  // progress 0.9: frozen
    }
    SUBCASE("rows of a member layer outside its group are scanned too") {
        auto spec = small_spec();
        spec.groups[0].size = 4;  // stem filters 4..7 belong to no group and are never scored
        model<float> part(spec);
        part.fill_random(psap_test::seed());
        part.layer("stem").weight(6, 1) = nan;
        CHECK_ERROR(p.step(part.net(), 1), "'stem'", "NaN or Inf weight", "filter 6");
    }
    SUBCASE("a criterion that never reads the weights (random) gets the full scan") {
        auto r = psap::presets::random({budget_kind::flops, 0.3}, 10, 7);
        m.layer("body").weight(1, 0) = nan;
        CHECK_ERROR(r.step(m.net(), 1), "'body'", "NaN or Inf weight", "filter 1");
    }
    SUBCASE("a layer outside every group") {
        m.layer("fc").weight(1, 0) = inf;
        CHECK_ERROR(p.step(m.net(), 1), "'fc'", "filter 1");
    }
    SUBCASE("batch-norm gamma and beta") {
        m.layer("stem").gamma[3] = inf;
        CHECK_ERROR(p.step(m.net(), 1), "'stem'", "gamma", "channel 3");
        m.layer("stem").gamma[3] = 1;
        m.layer("stem").beta[5] = nan;
        CHECK_ERROR(p.step(m.net(), 1), "'stem'", "beta", "channel 5");
    }
    SUBCASE("a NaN running variance reaches the criterion: the score error names the group") {
        m.layer("stem").var[2] = nan;
        CHECK_ERROR(p.step(m.net(), 1), "'stem_out'", "channel 2", "NaN/Inf");
    }
    SUBCASE("check_finite = false leaves the check to the user") {
        auto q = psap::presets::sfp({budget_kind::flops, 0.3}, 10);
        auto opts = q.options();
        opts.check_finite = false;
        psap::pruner<psap::uniform, psap::l2_norm, psap::no_protection, psap::soft> unchecked(opts);
        m.layer("fc").weight(1, 0) = inf;  // fc is not scored
        CHECK_NOTHROW(unchecked.step(m.net(), 1));
        // a scored layer's NaN still reaches its score, and the score check
        // (always on) names the group, without the scan's layer and filter
        m.layer("body").weight(4, 2) = nan;
        CHECK_ERROR(unchecked.step(m.net(), 2), "'body_out'", "channel 4", "NaN/Inf");
    }
}

TEST_CASE("with a second thread the unscored weights are scanned beside the decisions: the same errors, bad weights first") {
    // min_work 0: with 2 or 3 threads every step scans the weights no score
    // covers while deciding; with 1 it scans them up front. The messages must
    // be the same, and a bad weight must win over an error the decisions raise.
    auto spec = small_spec();
    spec.layers[2].out = 6000;  // fc: 6000 x 6, cut into row chunks when scanned beside
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const auto fresh = [&] {
        auto m = std::make_unique<model<float>>(spec);
        m->fill_random(psap_test::seed());
        return m;
    };
    for (int threads : {1, 2, 3}) {
        CAPTURE(threads);
        const threading_scope ts(threads, 0);
        auto p = [] { return psap::presets::psap({budget_kind::flops, 0.3}, 10); };
        {
            auto m = fresh();
            CHECK_NOTHROW(p().step(m->net(), 1));
        }
        {
            auto m = fresh();
            m->layer("fc").weight(5999, 5) = nan;  // last row of the last chunk
            CHECK_ERROR(p().step(m->net(), 1), "'fc'", "NaN or Inf weight", "filter 5999", "learning rate");
        }
        {
            auto m = fresh();
            m->layer("fc").weight(4000, 3) = inf;
            m->layer("fc").weight(2, 0) = nan;  // the first bad row is reported, whichever chunk holds it
            CHECK_ERROR(p().step(m->net(), 1), "'fc'", "filter 2");
        }
        {
            auto m = fresh();
            m->layer("body").weight(4, 2) = nan;  // scored, and before the FC in layer order
            m->layer("fc").weight(1, 0) = nan;
            CHECK_ERROR(p().step(m->net(), 1), "'body'", "filter 4");
        }
        {
            auto part_spec = spec;
            part_spec.groups[0].size = 4;  // stem filters 4..7 are never scored
            model<float> part(part_spec);
            part.fill_random(psap_test::seed());
            part.layer("stem").weight(6, 1) = nan;
            part.layer("fc").weight(0, 0) = nan;  // a later layer: the stem is reported
            CHECK_ERROR(p().step(part.net(), 1), "'stem'", "filter 6");
        }
        {
            // p_max = 0 makes the budget unreachable: the schedule fails while deciding
            auto m = fresh();
            auto q = p();
            q.schedule().p_max = 0;
            CHECK_ERROR(q.step(m->net(), 1), "cannot be met");
            m->layer("fc").weight(5, 1) = inf;
            CHECK_ERROR(q.step(m->net(), 1), "'fc'", "NaN or Inf weight", "filter 5");
        }
    }
}

TEST_CASE("with a second thread the structure is checked inside the step's region: the same error, before the scan's and the epoch's") {
    // decide_beside_scan checks the structure on the leading thread while a
    // helper lists the scan's pieces: a network with more layers than the
    // pruner was bound to must not be read past the pruner's per-layer state,
    // and the structure error must win over a bad weight and a bad epoch.
    auto spec = small_spec();
    spec.layers[2].out = 6000;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (int threads : {1, 2, 3}) {
        CAPTURE(threads);
        const threading_scope ts(threads, 0);
        model<float> m(spec);
        m.fill_random(psap_test::seed());
        auto p = psap::presets::psap({budget_kind::flops, 0.3}, 10);
        CHECK_NOTHROW(p.step(m.net(), 1));
        std::vector<float> extra(7 * 6, 0.5f);
        extra[3] = nan;
        psap::layer<float> l;
        l.name = "late";
        l.out_channels = 7;
        l.in_channels = 6;
        l.weight = psap::matrix_view<float>(extra.data(), 7, 6);
        m.net().add_layer(l);
        m.layer("fc").weight(5999, 1) = nan;
        CHECK_ERROR(p.step(m.net(), 2), "structure changed", "bind()");
        CHECK_ERROR(p.step(m.net(), std::numeric_limits<double>::quiet_NaN()), "structure changed", "bind()");
        m.layer("fc").weight(5999, 1) = 0;
        CHECK_ERROR(p.step(m.net(), 2), "structure changed", "bind()");
        p.bind(m.net());  // bound again, the new layer is scanned
        CHECK_ERROR(p.step(m.net(), 2), "'late'", "NaN or Inf weight", "filter 0");
        extra[3] = 0;
        CHECK_NOTHROW(p.step(m.net(), 2));
        CHECK_ERROR(p.step(m.net(), -1), "epoch", "finite and >= 0");
    }
}

TEST_CASE("the scan beside the decisions follows the network's buffers from step to step") {
    // decide_beside_scan keeps its lists of row chunks and BN vectors between
    // steps and rewrites only the entries whose view changed: a network of the
    // same structure in other buffers, and a value changed in place, are both
    // scanned.
    auto spec = small_spec();
    spec.layers[2].out = 6000;
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    for (int threads : {1, 2, 3}) {
        CAPTURE(threads);
        const threading_scope ts(threads, 0);
        auto p = psap::presets::psap({budget_kind::flops, 0.3}, 10);
        model<float> a(spec), b(spec);
        a.fill_random(psap_test::seed());
        b.fill_random(psap_test::seed() + 1);
        CHECK_NOTHROW(p.step(a.net(), 1));
        b.layer("fc").weight(5998, 2) = nan;
        CHECK_ERROR(p.step(b.net(), 2), "'fc'", "NaN or Inf weight", "filter 5998");
        CHECK_NOTHROW(p.step(a.net(), 2));
        a.layer("fc").weight(7, 0) = inf;
        CHECK_ERROR(p.step(a.net(), 3), "'fc'", "filter 7");
        a.layer("fc").weight(7, 0) = 0;
        b.layer("fc").weight(5998, 2) = 0;
        b.layer("stem").beta[3] = nan;
        CHECK_ERROR(p.step(b.net(), 3), "'stem'", "batch-norm beta", "channel 3");
        CHECK_NOTHROW(p.step(a.net(), 3));
    }
}

TEST_CASE("NaN or Inf gradients are rejected at observe(), naming the layer") {
    model<float> m(small_spec());
    m.fill_random(psap_test::seed());
    m.fill_grads(1, 0);
    auto p = psap::presets::psap({budget_kind::flops, 0.3}, 10);
    CHECK_NOTHROW(p.observe(m.net()));
    SUBCASE("gate gradient") {
        m.layer("stem").gate[6] = std::numeric_limits<float>::infinity();
        CHECK_ERROR(p.observe(m.net()), "'stem'", "gradient", "channel 6", "loss diverged");
    }
    SUBCASE("gamma gradient") {
        m.layer("stem").ggamma[0] = std::nanf("");
        CHECK_ERROR(p.observe(m.net()), "'stem'", "channel 0");
    }
    SUBCASE("conv gradient of a group without BN") {
        m.layer("body").grad(2, 7) = std::nanf("");
        CHECK_ERROR(p.observe(m.net()), "'body'", "filter 2");
    }
}

TEST_CASE("options, budgets and ratios outside their ranges") {
    auto make = [](psap::pruner_options o) {
        return psap::pruner<psap::uniform, psap::l2_norm, psap::no_protection, psap::soft>(o);
    };
    CHECK_ERROR(make({{budget_kind::flops, 1.0}, 10}), "target 1", "outside [0, 1)", "flops");
    CHECK_ERROR(make({{budget_kind::params, -0.2}, 10}), "target -0.2", "params");
    CHECK_ERROR(make({{budget_kind::flops, 0.5}, 0}), "total_epochs 0");
    CHECK_ERROR(make({{budget_kind::flops, 0.5}, 10, 1.0}), "final_phase 1");
    CHECK_ERROR(make({{budget_kind::flops, 0.5}, 10, 0, 0}), "keep_multiple 0");

    model<float> m(small_spec());
    m.fill_random(psap_test::seed());
    auto p = psap::presets::sfp({budget_kind::flops, 0.3}, 10);
    CHECK_ERROR(p.step(m.net(), -1), "epoch -1");
    CHECK_ERROR(p.step(m.net(), std::nan("")), "epoch nan");
    p.schedule().fixed_ratio = 1.5;
    CHECK_ERROR(p.step(m.net(), 1), "fixed_ratio 1.5", "outside [0, 1)");
    p.schedule().fixed_ratio = -1;
    p.schedule().p_max = 1.5;
    CHECK_ERROR(p.step(m.net(), 1), "p_max 1.5");

    auto a = psap::presets::psap({budget_kind::flops, 0.3}, 10);
    a.schedule().p_max = 1.0;
    CHECK_ERROR(a.step(m.net(), 6), "p_max = 1");
    a.schedule().p_max = 0.8;
    a.schedule().p_min = 0.9;
    CHECK_ERROR(a.step(m.net(), 6), "p_min = 0.9");
    a.schedule().p_min = 0;
    a.schedule().alpha = 1.5;
    CHECK_ERROR(a.step(m.net(), 6), "alpha 1.5");

    model<float> mb(small_bn_spec());
    mb.fill_random(psap_test::seed());
    auto s = psap::presets::slimming({budget_kind::flops, 0.3}, 10);
    s.schedule().p_max = 1.0;
    CHECK_ERROR(s.step(mb.net(), 1), "p_max 1");
}

TEST_CASE("invalid networks are rejected when the pruner binds, naming the group or layer") {
    model_spec spec = small_spec();
    SUBCASE("a group without members") {
        spec.groups.push_back({"dangling", 2, {}, {{"fc", 4}}});
        spec.groups[1].consumers.clear();  // free fc's input channels for it
        model<float> m(spec);
        auto p = psap::presets::sfp({budget_kind::flops, 0.3}, 10);
        CHECK_ERROR(p.step(m.net(), 1), "'dangling'", "no member");
    }
    SUBCASE("overlapping claims") {
        spec.groups.push_back({"again", 3, {{"body", 2}}, {}});
        model<float> m(spec);
        auto p = psap::presets::sfp({budget_kind::flops, 0.3}, 10);
        CHECK_ERROR(p.observe(m.net()), "'body'", "'again'", "claimed twice");
    }
    SUBCASE("the structure changed after binding") {
        model<float> m(spec);
        m.fill_random(1);
        auto p = psap::presets::sfp({budget_kind::flops, 0.3}, 10);
        p.step(m.net(), 1);
        m.net().add_group("late", 2).member(m.net().find_layer("fc"), 0);
        CHECK_ERROR(p.step(m.net(), 2), "structure changed", "bind()");
        // every hook, not only step(): each sizes its work by the bound groups
        CHECK_ERROR(p.observe(m.net()), "psap::pruner::observe", "structure changed", "bind()");
        CHECK_ERROR(p.after_update(m.net()), "psap::pruner::after_update", "structure changed");
        CHECK_ERROR(p.finalize(m.net()), "psap::pruner::finalize", "structure changed");
    }
    SUBCASE("a network with fewer groups than the pruner was bound to: no hook reads past them") {
        model<float> m(spec);
        m.fill_random(1);
        auto p = psap::presets::psap({budget_kind::flops, 0.3}, 10);
        p.observe(m.net());
        p.step(m.net(), 1);
        auto one = spec;
        one.groups.pop_back();
        model<float> fewer(one);
        fewer.fill_random(1);
        CHECK_ERROR(p.observe(fewer.net()), "psap::pruner::observe", "structure changed");
        CHECK_ERROR(p.after_update(fewer.net()), "psap::pruner::after_update", "structure changed");
        CHECK_ERROR(p.finalize(fewer.net()), "psap::pruner::finalize", "structure changed");
        CHECK_ERROR(p.step(fewer.net(), 2), "psap::pruner::step", "structure changed");
    }
    SUBCASE("a layer's geometry changed after binding (the costs would be stale)") {
        model<float> m(spec);
        m.fill_random(1);
        auto p = psap::presets::sfp({budget_kind::flops, 0.3}, 10);
        p.step(m.net(), 1);
        m.net().layer_at(m.net().find_layer("body")).out_positions *= 2;
        CHECK_ERROR(p.step(m.net(), 2), "structure changed", "bind()");
    }
}

TEST_CASE("a budget that cannot be met names the target, what is reachable and the fixes") {
    model<float> m(small_spec());
    m.fill_random(psap_test::seed());
    // With every group at p_max 0.95 (keeping 1 of 8 and 1 of 6), the FC and the stem's
    // input side still cost something: 99% of MACs is out of reach.
    auto p = psap::presets::sfp({budget_kind::flops, 0.99}, 10);
    CHECK_ERROR(p.step(m.net(), 1), "removing 99% of flops", "cannot be met", "maximum ratio 0.95", "lower the target", "p_max");
    auto a = psap::presets::psap({budget_kind::params, 0.95}, 10);
    CHECK_ERROR(a.step(m.net(), 6), "params", "cannot be met");
    model<float> mb(small_bn_spec());
    mb.fill_random(psap_test::seed());
    auto g = psap::presets::slimming({budget_kind::flops, 0.99}, 10);
    CHECK_ERROR(g.step(mb.net(), 1), "global_threshold", "cannot be met");
    // slimming on a group without batch norm: the error names the group and the layer
    auto g2 = psap::presets::slimming({budget_kind::flops, 0.3}, 10);
    CHECK_ERROR(g2.step(m.net(), 1), "'body_out'", "'body'", "no batch norm");
}

// Policies that break their family's contract: the pruner's own checks catch them.
struct bad_schedule {
    template <class Net>
    void plan(const Net&, const psap::step_context& ctx, psap::schedule_plan& p) {
        for (std::size_t g = 0; g < p.count.size(); ++g) p.count[g] = ctx.costs.group_sizes()[g];  // prunes everything
    }
};
struct bad_criterion {
    template <class Net>
    void score(const Net&, const psap::step_context&, std::span<std::vector<double>> s) {
        for (auto& v : s) std::fill(v.begin(), v.end(), std::nan(""));
    }
};
struct bad_restorer {
    template <class Net>
    void restores(const Net&, const psap::step_context&, std::span<std::vector<index>> out) {
        out[1] = {0};  // channel 0 of body_out, which is not pruned
    }
    template <class Net>
    void shield(const Net&, const psap::step_context&, std::span<const index>, std::span<std::vector<index>>) {}
};
struct bad_shield {
    template <class Net>
    void restores(const Net&, const psap::step_context&, std::span<std::vector<index>>) {}
    template <class Net>
    void shield(const Net&, const psap::step_context& ctx, std::span<const index>, std::span<std::vector<index>> out) {
        for (std::size_t g = 0; g < out.size(); ++g)
            for (index c = 0; c < ctx.groups[g].size(); ++c) out[g].push_back(c);  // shields everything
    }
};

TEST_CASE("policies that break their contract are caught by the pruner, naming the group") {
    model<float> m(small_spec());
    m.fill_random(psap_test::seed());
    const psap::pruner_options o{{budget_kind::filters, 0.3}, 10};
    psap::pruner<bad_schedule, psap::l2_norm, psap::no_protection, psap::soft> a(o);
    CHECK_ERROR(a.step(m.net(), 1), "prune 8 of the 8 channels", "'stem_out'", "keeps at least one");
    psap::pruner<psap::uniform, bad_criterion, psap::no_protection, psap::soft> b(o);
    CHECK_ERROR(b.step(m.net(), 1), "scored channel 0", "'stem_out'", "nan");
    psap::pruner<psap::uniform, psap::l2_norm, bad_restorer, psap::soft> c(o);
    CHECK_ERROR(c.step(m.net(), 1), "restored channel 0", "'body_out'", "not pruned");
    psap::pruner<psap::uniform, psap::l2_norm, bad_shield, psap::soft> d(o);
    CHECK_ERROR(d.step(m.net(), 1), "'stem_out'", "shielded too many");
}

template <class P>
std::vector<std::uint8_t> some_state(model<float>& m, P& p) {
    run(p, m, {.grad_seed = 3, .epochs = 3, .iterations = 3});
    return p.state();
}

TEST_CASE("state blobs: from another network, before binding, truncated or corrupt") {
    model<float> m(small_spec());
    m.fill_random(psap_test::seed());
    auto p = psap::presets::psap({budget_kind::flops, 0.4}, 10);
    CHECK_ERROR(p.state(), "not bound");
    const auto blob = some_state(m, p);

    SUBCASE("another network") {
        auto other_spec = small_spec();
        other_spec.groups[1].size = 5;
        model<float> other(other_spec);
        auto q = psap::presets::psap({budget_kind::flops, 0.4}, 10);
        CHECK_ERROR(q.load_state(other.net(), blob), "another network", "same layers and groups");
        model<float> renamed([] {
            auto s = small_spec();
            s.layers[2].name = "head";
            s.groups[1].consumers[0].layer = "head";
            return s;
        }());
        CHECK_ERROR(q.load_state(renamed.net(), blob), "another network");
    }
    SUBCASE("another pruner's state is refused too (it would not decide identically)") {
        auto q = psap::presets::sfp({budget_kind::flops, 0.4}, 10);
        model<float> m2(small_spec());
        CHECK_NOTHROW(q.load_state(m2.net(), blob));  // same network: the blob is accepted ...
        CHECK(q.steps_taken() == 3);                  // ... and the shared state restored
    }
    SUBCASE("every truncation is an error") {
        for (std::size_t n = 0; n < blob.size(); ++n) {
            CAPTURE(n);
            auto q = psap::presets::psap({budget_kind::flops, 0.4}, 10);
            const std::string msg = error_of([&] { q.load_state(m.net(), std::span(blob.data(), n)); });
            CHECK(msg.find("psap::pruner::load_state") != std::string::npos);
        }
    }
    SUBCASE("nested deeper than any state: refused before the parser recurses into it") {
        // 300,000 nested one-element arrays: a recursive parse overflows the stack.
        std::vector<std::uint8_t> deep(300000, 0x81);
        deep.push_back(0x00);
        auto q = psap::presets::psap({budget_kind::flops, 0.4}, 10);
        CHECK_ERROR(q.load_state(m.net(), deep), "psap::pruner::load_state", "nests more than 64 levels");
    }
    SUBCASE("not a state at all") {
        auto q = psap::presets::psap({budget_kind::flops, 0.4}, 10);
        const std::vector<std::uint8_t> junk{0x01, 0x02, 0x03};
        CHECK_ERROR(q.load_state(m.net(), junk), "corrupt or truncated");
        const auto other_json = nlohmann::json::to_cbor(nlohmann::json{{"format", 3}});
        CHECK_ERROR(q.load_state(m.net(), other_json), "psap::pruner::load_state");
        const auto no_fields = nlohmann::json::to_cbor(nlohmann::json{{"format", psap::state_format}, {"version", 1}});
        CHECK_ERROR(q.load_state(m.net(), no_fields), "psap::pruner::load_state");
    }
    SUBCASE("a well-formed blob with a field missing or of the wrong type") {
        // Edit the payload behind a valid envelope (re-wrapped with a fresh
        // checksum), so the payload's own validation is what is tested.
        const auto fp = m.net().fingerprint();
        auto j = nlohmann::json::from_cbor(nlohmann::json::from_cbor(blob).at("payload").get_binary());
        auto wrap = [&](const nlohmann::json& x) { return psap::wrap_state(x, fp); };
        for (const char* key : {"steps", "snapshots", "log", "protect", "criterion"}) {
            CAPTURE(key);
            auto broken = j;
            broken.erase(key);
            auto q = psap::presets::psap({budget_kind::flops, 0.4}, 10);
            CHECK_ERROR(q.load_state(m.net(), wrap(broken)), "psap::pruner::load_state", key);
            broken = j;
            broken[key] = "wrong";
            CHECK_ERROR(q.load_state(m.net(), wrap(broken)), "psap::pruner::load_state");
        }
        auto broken = j;
        broken["groups"][0]["ratio"] = std::nan("");
        auto q = psap::presets::psap({budget_kind::flops, 0.4}, 10);
        CHECK_ERROR(q.load_state(m.net(), wrap(broken)), "ratio");
        broken = j;
        broken["groups"][1]["pruned"] = nlohmann::json::binary({0, 7, 1, 0, 0, 0});
        CHECK_ERROR(q.load_state(m.net(), wrap(broken)), "'body_out'", "mask");
        broken = j;
        broken["protect"]["acc"] = std::vector<std::vector<double>>{{1.0}};
        CHECK_ERROR(q.load_state(m.net(), wrap(broken)), "gradient_pulse");
    }
    SUBCASE("a payload altered behind an intact envelope fails its checksum") {
        auto env = nlohmann::json::from_cbor(blob);
        auto& payload = env.at("payload").get_binary();
        payload[payload.size() / 2] ^= 0x01;
        auto q = psap::presets::psap({budget_kind::flops, 0.4}, 10);
        CHECK_ERROR(q.load_state(m.net(), nlohmann::json::to_cbor(env)), "checksum");
    }
    SUBCASE("flipped bytes: a psap::error or a state that still works, never another exception or a crash") {
        int errors = 0, loaded = 0;
        for (std::size_t i = 0; i < blob.size(); i += 5) {
            CAPTURE(i);
            auto bad = blob;
            bad[i] ^= 0x5a;
            model<float> mm(small_spec());
            mm.copy_from(m);
            auto q = psap::presets::psap({budget_kind::flops, 0.4}, 10);
            try {
                q.load_state(mm.net(), bad);
                ++loaded;
                run(q, mm, {.grad_seed = 4, .epochs = 5, .iterations = 2, .first_epoch = 3});
            } catch (const psap::error&) {
                ++errors;
            } catch (const std::exception& e) {
                FAIL_CHECK("not a psap::error: ", e.what());
            }
        }
        MESSAGE(errors, " flips rejected, ", loaded, " loaded");
        CHECK(errors > 0);
    }
}

}  // namespace
