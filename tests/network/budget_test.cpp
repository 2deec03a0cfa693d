// Cost accounting (network/budget.hpp): the literature's CIFAR ResNet numbers,
// Li et al.'s pruned ResNet-56 widths, residual-stream groups with offsets, and
// a brute-force per-layer recount on random networks.
#include <psap/network/budget.hpp>

#include <support/mobilenet.hpp>
#include <support/model.hpp>
#include <support/random_net.hpp>
#include <support/resnet.hpp>
#include <support/seed.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace {

using psap::budget_kind;
using psap::index;
using namespace psap_test;

/// Kept counts for every group of `net` from a name -> kept map (others full).
template <class Net>
std::vector<index> kept_by_name(const Net& net, const std::map<std::string, index>& kept) {
    std::vector<index> k;
    for (const auto& g : net.groups()) {
        const auto it = kept.find(g.name);
        k.push_back(it == kept.end() ? g.size : it->second);
    }
    return k;
}

double round_to_tenth_percent(double fraction) { return std::round(fraction * 1000.0) / 10.0; }

TEST_CASE("CIFAR ResNet-56 and ResNet-20 option A cost what the literature says") {
    // baselines.md §1.1: ResNet-56 125,485,696 MACs (125,485,056 convs only + 640 FC)
    // and 853,018 parameters with BN gamma/beta and the FC bias; ResNet-20 40,551,040 / 269,722.
    {
        model<float> m(cifar_resnet({.n = 9}));
        const psap::cost_model costs(m.net());
        CHECK(costs.full().macs == 125'485'696);
        CHECK(costs.full().params == 853'018);
        // filters: stem 16 + 18 convs x (16 + 32 + 64) + FC 10
        CHECK(costs.full().filters == 16 + 18 * (16 + 32 + 64) + 10);
        // the conv-only figure of SFP/FPGM's counter: FC is 64 x 10 MACs
        CHECK(costs.full().macs - 64 * 10 == 125'485'056);
        CHECK(costs.group_count() == 27);
    }
    {
        model<float> m(cifar_resnet({.n = 3}));
        const psap::cost_model costs(m.net());
        CHECK(costs.full().macs == 40'551'040);
        CHECK(costs.full().params == 269'722);
    }
}

TEST_CASE("Li et al. ResNet-56-pruned-A and -B reductions (baselines.md §2)") {
    // Removing r channels from a block's internal group removes r rows of conv1
    // (C_in*9 weights and 2 BN parameters each, C_in*9*HW MACs each) and r input
    // channels of conv2 (C*9 weights, C*9*HW MACs each). Per removed channel:
    //   stage 1 (C_in = C = 16, HW = 1024): MACs (16 + 16)*9*1024 = 294,912, params 16*9 + 2 + 16*9 = 290
    //   stage 2 (32, 32, 256):              MACs (32 + 32)*9*256  = 147,456, params 578
    //   stage 3 (64, 64, 64):               MACs (64 + 64)*9*64   =  73,728, params 1,154
    const std::int64_t full_macs = 125'485'696, full_params = 853'018;

    SUBCASE("pruned-A: keep 14/28/57 of 16/32/64, skip layers 16, 20, 38, 54") {
        model<float> m(cifar_resnet({.n = 9, .skip_layers = {16, 20, 38, 54}}));
        const psap::cost_model costs(m.net());
        REQUIRE(costs.group_count() == 27 - 4);
        std::map<std::string, index> kept;
        for (const auto& g : m.net().groups()) kept[g.name] = g.size == 16 ? 14 : g.size == 32 ? 28 : 57;
        const auto c = costs.evaluate(kept_by_name(m.net(), kept));
        // 8 stage-1 blocks (block 8 = layer 16 skipped) lose 2 channels, 8 stage-2 blocks
        // (layer 20 = block 10 skipped) lose 4, 7 stage-3 blocks (layers 38, 54) lose 7.
        const std::int64_t macs_removed = 8 * 2 * 294'912 + 8 * 4 * 147'456 + 7 * 7 * 73'728;  // 13,049,856
        const std::int64_t params_removed = 8 * 2 * 290 + 8 * 4 * 578 + 7 * 7 * 1'154;         // 79,682
        CHECK(c.macs == full_macs - macs_removed);
        CHECK(c.params == full_params - params_removed);
        const auto kv = kept_by_name(m.net(), kept);
        CHECK(round_to_tenth_percent(costs.reduction(budget_kind::flops, kv)) == doctest::Approx(10.4));  // the paper's 10.4%
        // Params: 79,682 / 853,018 = 9.34%. The paper prints 9.4% from 8.5e5 -> 7.7e5 rounded
        // figures (baselines.md: "our counter gives 9.3-9.4"), so we hold our exact value and
        // allow the paper's number 0.1 points away (its two-significant-digit rounding).
        CHECK(costs.reduction(budget_kind::params, kv) == doctest::Approx(79'682.0 / 853'018.0).epsilon(1e-12));
        CHECK(std::abs(100 * costs.reduction(budget_kind::params, kv) - 9.4) < 0.1);
    }
    SUBCASE("pruned-B: keep 6/22/57, skip layers 16, 18, 20, 34, 38, 54") {
        model<float> m(cifar_resnet({.n = 9, .skip_layers = {16, 18, 20, 34, 38, 54}}));
        const psap::cost_model costs(m.net());
        REQUIRE(costs.group_count() == 27 - 6);
        std::map<std::string, index> kept;
        for (const auto& g : m.net().groups()) kept[g.name] = g.size == 16 ? 6 : g.size == 32 ? 22 : 57;
        const auto kv = kept_by_name(m.net(), kept);
        const auto c = costs.evaluate(kv);
        // 7 stage-1 blocks lose 10, 7 stage-2 blocks (blocks 10 and 17 skipped) lose 10, 7 stage-3 blocks lose 7.
        const std::int64_t macs_removed = 7 * 10 * 294'912 + 7 * 10 * 147'456 + 7 * 7 * 73'728;  // 34,578,432
        const std::int64_t params_removed = 7 * 10 * 290 + 7 * 10 * 578 + 7 * 7 * 1'154;         // 117,306
        CHECK(c.macs == full_macs - macs_removed);
        CHECK(c.params == full_params - params_removed);
        CHECK(round_to_tenth_percent(costs.reduction(budget_kind::flops, kv)) == doctest::Approx(27.6));
        // 117,306 / 853,018 = 13.75%: 13.8% at 0.1% (baselines.md's derived value); the paper's
        // 13.7% comes from the rounded 7.3e5 and is 0.05 points away.
        CHECK(round_to_tenth_percent(costs.reduction(budget_kind::params, kv)) == doctest::Approx(13.8));
        CHECK(std::abs(100 * costs.reduction(budget_kind::params, kv) - 13.7) < 0.1);
    }
}

TEST_CASE("an inverted residual (MobileNetV2): the depthwise conv is a member, priced per kept channel with one input each") {
    // C = 16, E = 64, 8x8 maps. Per block: expand 64*16*64 = 65,536 MACs,
    // depthwise 64*1*9*64 = 36,864, project 16*64*64 = 65,536; stem
    // 16*3*9*64 = 27,648; head 10*16 = 160. Params: stem 16*27 + 32 = 464;
    // expand 64*16 + 128, depthwise 64*9 + 128, project 16*64 + 32 (2,912 a
    // block); head 160 + 10 bias.
    model<float> m(inverted_residual_net({.blocks = 2}));
    m.net().validate();
    const psap::cost_model costs(m.net());
    CHECK(costs.full().macs == 27'648 + 2 * 167'936 + 160);
    CHECK(costs.full().params == 464 + 2 * 2'912 + 170);
    CHECK(costs.full().filters == 16 + 2 * (64 + 64 + 16) + 10);
    // Keep 40 and 20 expanded channels and 12 stream channels (groups in
    // spec order: b1.expanded, b2.expanded, stream). A block keeping k
    // expanded channels of a 12-wide stream: expand k*12*64, depthwise k*9*64
    // (each kept filter still reads one channel), project 12*k*64 = 2,112k
    // MACs; params expand 12k + 2k, depthwise 9k + 2k, project 12k + 24.
    const std::vector<index> kept{40, 20, 12};
    CHECK(costs.evaluate(kept).macs == 12 * 27 * 64 + 2'112 * 40 + 2'112 * 20 + 10 * 12);
    CHECK(costs.evaluate(kept).params == (12 * 27 + 24) + (37 * 40 + 24) + (37 * 20 + 24) + (10 * 12 + 10));
    for (const auto& w : costs.widths(kept)) {
        CAPTURE(w.name);
        if (w.name == "b1.dw") {
            CHECK(w.out_before == 64);
            CHECK(w.out_after == 40);
            CHECK(w.in_after == 1);  // a depthwise filter's input is its own channel, not a consumer slice
            CHECK(w.macs_after == 40 * 9 * 64);
        }
        if (w.name == "b2.project") {
            CHECK(w.in_after == 20);
            CHECK(w.out_after == 12);
        }
    }
}

TEST_CASE("residual-stream groups (option A, SFP layout) count their filters and every consumer's input channels") {
    model<float> m(cifar_resnet({.n = 9, .internal_groups = true, .stream_groups = true}));
    const psap::cost_model costs(m.net());
    REQUIRE(costs.group_count() == 27 + 3);
    const auto full = costs.full();
    CHECK(full.macs == 125'485'696);  // groups never change the unpruned cost

    // One channel of stream1 (stage-1 index c, kept at index c in stages 2 and 3) is:
    //   a filter of the stem (3*9 weights + 2 BN, at 32x32) and of all 27 conv2s,
    //   an input channel of all 27 conv1s and of the FC.
    const std::int64_t s1_macs = 3 * 9 * 1024           // stem row
                                 + 9 * (16 * 9 * 1024)  // stage-1 conv2 rows
                                 + 9 * (32 * 9 * 256)   // stage-2 conv2 rows
                                 + 9 * (64 * 9 * 64)    // stage-3 conv2 rows
                                 + 9 * (16 * 9 * 1024)  // stage-1 conv1 input columns
                                 + 9 * (32 * 9 * 256)   // stage-2 conv1 (incl. the stride-2 first one)
                                 + 9 * (64 * 9 * 64)    // stage-3 conv1
                                 + 10;                  // FC input
    const std::int64_t s1_params = (27 + 2) + 9 * (16 * 9 + 2) + 9 * (32 * 9 + 2) + 9 * (64 * 9 + 2)  // filters + BN
                                   + 9 * (16 * 9) + 9 * (32 * 9) + 9 * (64 * 9) + 10;                 // input columns
    // stream2 (stage-2 channels 16..31): 18 conv2 rows, 17 conv1 inputs (not stage 2's first conv1,
    // whose input is stage 1's 16 channels), FC.
    const std::int64_t s2_macs = 9 * (32 * 9 * 256) + 9 * (64 * 9 * 64) + 8 * (32 * 9 * 256) + 9 * (64 * 9 * 64) + 10;
    const std::int64_t s2_params = 9 * (32 * 9 + 2) + 9 * (64 * 9 + 2) + 8 * (32 * 9) + 9 * (64 * 9) + 10;
    // stream3 (stage-3 channels 32..63): 9 conv2 rows, 8 conv1 inputs, FC.
    const std::int64_t s3_macs = 9 * (64 * 9 * 64) + 8 * (64 * 9 * 64) + 10;
    const std::int64_t s3_params = 9 * (64 * 9 + 2) + 8 * (64 * 9) + 10;
    CHECK(s1_macs == 4'672'522);  // the arithmetic above, once by hand
    CHECK(s1_params == 18'237);

    for (index k : {1, 3, 15}) {
        CAPTURE(k);
        auto c = costs.evaluate(kept_by_name(m.net(), {{"stream1", 16 - k}}));
        CHECK(full.macs - c.macs == k * s1_macs);
        CHECK(full.params - c.params == k * s1_params);
        CHECK(full.filters - c.filters == k * 28);  // stem + 27 conv2
        c = costs.evaluate(kept_by_name(m.net(), {{"stream2", 16 - k}}));
        CHECK(full.macs - c.macs == k * s2_macs);
        CHECK(full.params - c.params == k * s2_params);
        CHECK(full.filters - c.filters == k * 18);
        c = costs.evaluate(kept_by_name(m.net(), {{"stream3", 32 - k}}));
        CHECK(full.macs - c.macs == k * s3_macs);
        CHECK(full.params - c.params == k * s3_params);
        CHECK(full.filters - c.filters == k * 9);
    }

    SUBCASE("a layer shrunk on both sides costs (out - a)(in - b), not the sum of both reductions") {
        // Block s1b2: its internal group removes a rows of conv1 and a inputs of conv2; stream1
        // removes b inputs of conv1 and b rows of conv2. Each of the two convs loses
        // a*16 + b*16 - a*b channel pairs, so the separate reductions double-count 2*a*b pairs.
        const index a = 5, b = 3;
        const auto c = costs.evaluate(kept_by_name(m.net(), {{"s1b2", 16 - a}, {"stream1", 16 - b}}));
        const std::int64_t internal_macs = a * (16 + 16) * 9 * 1024, internal_params = a * (16 * 9 + 2 + 16 * 9);
        CHECK(full.macs - c.macs == internal_macs + b * s1_macs - 2 * a * b * 9 * 1024);
        CHECK(full.params - c.params == internal_params + b * s1_params - 2 * a * b * 9);
        const auto w = costs.widths(kept_by_name(m.net(), {{"s1b2", 16 - a}, {"stream1", 16 - b}}));
        for (const auto& l : w)
            if (l.name == "s1b2c1") {
                CHECK(l.out_after == 16 - a);
                CHECK(l.in_after == 16 - b);
                CHECK(l.macs_after == (16 - a) * (16 - b) * 9 * 1024);
                CHECK(l.params_after == (16 - a) * (16 - b) * 9 + 2 * (16 - a));
            } else if (l.name == "s1b2c2") {
                CHECK(l.out_after == 16 - b);
                CHECK(l.in_after == 16 - a);
            } else if (l.name == "fc") {
                CHECK(l.in_after == 64 - b);
                CHECK(l.out_after == 10);
                CHECK(l.params_after == 10 * (64 - b) + 10);
            }
    }
}

TEST_CASE("cost_model matches a brute-force per-layer recount on random networks") {
    for (std::uint64_t k = 0; k < 20; ++k) {
        const auto seed = psap_test::seed() + k;
        CAPTURE(seed);
        const auto spec = random_spec(seed);
        model<float> m(spec);
        const psap::cost_model costs(m.net());
        rng r(seed * 7 + 1);
        for (int trial = 0; trial < 5; ++trial) {
            std::map<std::string, index> kept;
            std::vector<index> kv;
            for (const auto& g : spec.groups) kv.push_back(kept[g.name] = r.between(1, g.size));
            // Reference: for each layer, the channels removed on its output side are the sum of
            // (size - kept) over groups that list it as a member, likewise inputs and consumers.
            std::int64_t macs = 0, params = 0, filters = 0;
            for (const auto& l : spec.layers) {
                index out = l.out, in = l.in;
                for (const auto& g : spec.groups) {
                    for (const auto& s : g.members)
                        if (s.layer == l.name) out -= g.size - kept[g.name];
                    for (const auto& s : g.consumers)
                        if (s.layer == l.name) in -= g.size - kept[g.name];
                }
                macs += std::int64_t(out) * in * l.kernel_area * l.positions;
                params += std::int64_t(out) * in * l.kernel_area + out * ((l.bias ? 1 : 0) + (l.bn ? 2 : 0));
                filters += out;
            }
            const auto c = costs.evaluate(kv);
            CHECK(c.macs == macs);
            CHECK(c.params == params);
            CHECK(c.filters == filters);
            CHECK(costs.reduction(budget_kind::flops, kv) ==
                  doctest::Approx(1.0 - double(macs) / double(costs.full().macs)).epsilon(1e-15));
        }
    }
}

TEST_CASE("budget targets outside [0, 1) and unknown kinds are errors that say what to do") {
    for (double t : {-0.1, 1.0, 1.5, std::nan("")}) {
        CAPTURE(t);
        psap::budget b{budget_kind::params, t};
        try {
            b.validate();
            FAIL("accepted target ", t);
        } catch (const psap::error& e) {
            const std::string msg = e.what();
            CHECK(msg.find("outside [0, 1)") != std::string::npos);
            CHECK(msg.find("params") != std::string::npos);
        }
    }
    CHECK_NOTHROW(psap::budget{budget_kind::flops, 0.0}.validate());
    CHECK(psap::parse_budget_kind("macs") == budget_kind::flops);
    CHECK(psap::parse_budget_kind("channels") == budget_kind::filters);
    CHECK_THROWS_WITH_AS(psap::parse_budget_kind("latency"), doctest::Contains("latency"), psap::error);
}

TEST_CASE("cost_model: kept counts of the wrong length or outside [0, size] are errors, in evaluate() and widths()") {
    layer_spec a{.name = "a", .out = 8, .in = 3, .kernel_area = 9, .positions = 16};
    layer_spec b{.name = "b", .out = 4, .in = 8, .kernel_area = 9, .positions = 16};
    model<float> m({{a, b}, {{"g", 8, {{"a", 0}}, {{"b", 0}}}}});
    const psap::cost_model costs(m.net());
    const std::vector<index> none, negative{-5}, too_many{9}, all{8}, half{4};
    for (auto* kept : {&none, &negative, &too_many}) {
        CAPTURE(kept->size());
        CHECK_THROWS_WITH_AS((void)costs.evaluate(*kept), doctest::Contains("psap::cost_model::evaluate"), psap::error);
        CHECK_THROWS_WITH_AS((void)costs.widths(*kept), doctest::Contains("psap::cost_model::widths"), psap::error);
    }
    CHECK_THROWS_WITH_AS((void)costs.widths(negative), doctest::Contains("keeps -5 of its 8"), psap::error);
    // in range: by hand, b's input halves with g
    CHECK(costs.evaluate(all).macs == 8 * 3 * 9 * 16 + 4 * 8 * 9 * 16);
    CHECK(costs.evaluate(half).macs == 4 * 3 * 9 * 16 + 4 * 4 * 9 * 16);
    CHECK(costs.widths(half)[1].in_after == 4);
}

TEST_CASE("cost_model::id(): models built apart differ, for any network type; copies share it; a default one has 0") {
    const auto spec = random_spec(psap_test::seed() + 40);
    model<float> f(spec);
    model<double> d(spec);
    const psap::cost_model a(f.net()), b(d.net()), c(f.net());
    CHECK(a.id() != 0);
    CHECK(b.id() != 0);
    CHECK(a.id() != b.id());  // one counter for every network type
    CHECK(a.id() != c.id());  // the same network, built again
    CHECK(c.id() != b.id());
    const psap::cost_model copy = a;
    CHECK(copy.id() == a.id());
    CHECK(psap::cost_model{}.id() == 0);
    // Many of each type: no id repeats (a counter per network type would restart at 1 for each).
    std::set<std::uint64_t> ids{a.id(), b.id(), c.id()};
    for (int k = 0; k < 300; ++k) ids.insert(psap::cost_model(f.net()).id()), ids.insert(psap::cost_model(d.net()).id());
    CHECK(ids.size() == 603);
}

}  // namespace
