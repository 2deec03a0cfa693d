// psap::network (network/network.hpp): construction-time checks name the layer
// or group, the value and the fix; member_of slices members by offset; the
// structure fingerprint tracks structure only.
#include <psap/network/network.hpp>

#include <support/model.hpp>
#include <support/seed.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace {

using psap::index;
using namespace psap_test;

/// Runs f, requires a psap::error whose message contains every fragment.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> fragments) {
    try {
        f();
        FAIL("no psap::error thrown");
    } catch (const psap::error& e) {
        const std::string msg = e.what();
        for (const auto& s : fragments) {
            INFO("message: ", msg);
            CHECK_MESSAGE(msg.find(s) != std::string::npos, "missing '", s, "'");
        }
    }
}

struct storage {
    std::vector<float> w, g, v4, v5;
    storage() : w(4 * 18, 0.5f), g(4 * 18, 0.f), v4(4, 1.f), v5(5, 1.f) {}
    psap::layer<float> conv(std::string name) {
        psap::layer<float> l;
        l.name = std::move(name);
        l.out_channels = 4;
        l.in_channels = 2;
        l.kernel_area = 9;
        l.out_positions = 16;
        l.weight = psap::filters(w.data(), 4, 18);
        l.grad = psap::filters(g.data(), 4, 18);
        return l;
    }
    psap::batch_norm_views<float> bn() { return {.gamma = psap::channels(v4.data(), 4), .beta = psap::channels(v4.data(), 4)}; }
};

TEST_CASE("layer views that disagree with the declared geometry are rejected, naming the layer") {
    storage s;
    psap::network<float> net;
    SUBCASE("weight rows") {
        auto l = s.conv("conv_rows");
        l.out_channels = 5;
        expect_error([&] { net.add_layer(l); }, {"conv_rows", "4 x 18", "expected 5 x 18"});
    }
    SUBCASE("weight fan-in") {
        auto l = s.conv("conv_fanin");
        l.kernel_area = 1;
        expect_error([&] { net.add_layer(l); }, {"conv_fanin", "expected 4 x 2"});
    }
    SUBCASE("gradient vs weight") {
        auto l = s.conv("conv_grad");
        l.grad = psap::filters(s.g.data(), 4, 17);
        expect_error([&] { net.add_layer(l); }, {"conv_grad", "gradient", "4 x 17", "4 x 18"});
    }
    SUBCASE("bias length") {
        auto l = s.conv("conv_bias");
        l.bias = psap::channels(s.v5.data(), 5);
        expect_error([&] { net.add_layer(l); }, {"conv_bias", "bias", "5 entries", "expected 4"});
    }
    SUBCASE("BN gamma length") {
        auto l = s.conv("conv_gamma");
        l.bn = s.bn();
        l.bn->gamma = psap::channels(s.v5.data(), 5);
        expect_error([&] { net.add_layer(l); }, {"conv_gamma", "BN gamma", "5 entries", "expected 4"});
    }
    SUBCASE("BN beta missing") {
        auto l = s.conv("conv_beta");
        l.bn = s.bn();
        l.bn->beta = {};
        expect_error([&] { net.add_layer(l); }, {"conv_beta", "BN beta", "0 entries"});
    }
    SUBCASE("BN running variance and gradient lengths") {
        auto l = s.conv("conv_var");
        l.bn = s.bn();
        l.bn->running_var = psap::channels(s.v5.data(), 3);
        expect_error([&] { net.add_layer(l); }, {"conv_var", "running variance", "3 entries"});
        l.bn = s.bn();
        l.bn->grad_gamma = psap::channels(s.v5.data(), 5);
        expect_error([&] { net.add_layer(l); }, {"conv_var", "gamma gradient"});
        l.bn = s.bn();
        l.bn->gate_grad = psap::channels(s.v5.data(), 2);
        expect_error([&] { net.add_layer(l); }, {"conv_var", "gate gradient"});
    }
    SUBCASE("filters that share memory") {
        // Row stride 9 < 18: rows i and i + 1 overlap in 9 elements.
        auto l = s.conv("conv_alias");
        l.weight = psap::filters(s.w.data(), 4, 18, 9, 1);
        expect_error([&] { net.add_layer(l); }, {"conv_alias", "weight view", "share memory", "row stride 9"});
        // Column stride 2, row stride 9: rows 0 and 1 interleave (even / odd
        // elements), rows 0 and 2 meet at element 18.
        l.weight = psap::filters(s.w.data(), 4, 18, 9, 2);
        expect_error([&] { net.add_layer(l); }, {"conv_alias", "weight view", "share memory"});
        l = s.conv("conv_alias_grad");
        l.grad = psap::filters(s.g.data(), 4, 18, 0, 1);  // a broadcast: every filter is one row
        expect_error([&] { net.add_layer(l); }, {"conv_alias_grad", "gradient view", "share memory"});
    }
    SUBCASE("strided filters that do not share memory are accepted") {
        std::vector<float> big(4 * 19, 0.5f);
        auto l = s.conv("conv_padded");
        l.weight = psap::filters(big.data(), 4, 18, 19, 1);  // padded rows
        l.grad = psap::filters(s.g.data(), 4, 18, 1, 4);     // column-major
        CHECK_NOTHROW(net.add_layer(l));
    }
    SUBCASE("a channel vector of stride 0") {
        auto l = s.conv("conv_bcast");
        l.bn = s.bn();
        l.bn->gamma = psap::channels(s.v4.data(), 4, 0);
        expect_error([&] { net.add_layer(l); }, {"conv_bcast", "BN gamma", "stride 0"});
    }
    SUBCASE("BN eps") {
        auto l = s.conv("conv_eps");
        l.bn = s.bn();
        l.bn->eps = 0;
        expect_error([&] { net.add_layer(l); }, {"conv_eps", "eps", "positive"});
    }
    SUBCASE("non-positive extents and empty names") {
        auto l = s.conv("conv_zero");
        l.in_channels = 0;
        l.weight = {};
        l.grad = {};
        expect_error([&] { net.add_layer(l); }, {"conv_zero", "must be positive"});
        l = s.conv("conv_area");
        l.out_positions = 0;
        expect_error([&] { net.add_layer(l); }, {"conv_area", "out_positions 0"});
        l = s.conv("");
        expect_error([&] { net.add_layer(l); }, {"non-empty name"});
    }
    SUBCASE("duplicate names") {
        net.add_layer(s.conv("twice"));
        expect_error([&] { net.add_layer(s.conv("twice")); }, {"twice", "unique"});
        net.add_group("gg", 2).member(0);
        expect_error([&] { net.add_group("gg", 2); }, {"gg", "unique"});
    }
}

TEST_CASE("groups: empty, out of range, without members, overlapping claims, mixed batch norm") {
    storage s;
    psap::network<float> net;
    const index a = net.add_layer(s.conv("a"));
    auto lb = s.conv("b_bn");
    lb.bn = s.bn();
    const index b = net.add_layer(lb);
    auto cost_only = s.conv("cost_only");
    cost_only.weight = {};
    cost_only.grad = {};
    cost_only.in_channels = 4;
    const index c = net.add_layer(cost_only);

    SUBCASE("a group of zero channels") {
        expect_error([&] { net.add_group("empty_group", 0); }, {"empty_group", "0 channels", "at least one"});
    }
    SUBCASE("members and consumers must fit") {
        auto g = net.add_group("wide", 3);
        expect_error([&] { g.member(a, 2); }, {"wide", "offset 2", "4 output channels", "'a'"});
        expect_error([&] { g.consumer(a, -1); }, {"wide", "input channels", "'a'"});
        expect_error([&] { net.add_group("too_big", 3).consumer(a, 0); }, {"too_big", "2 input channels"});
        expect_error([&] { g.member(c); }, {"cost_only", "no weight view", "wide"});
        expect_error([&] { g.member(17); }, {"no layer with id 17"});
    }
    SUBCASE("a group without members fails at validate/bind") {
        net.add_group("g_ok", 2).member(a);
        net.add_group("orphan", 2).consumer(a);
        expect_error([&] { net.validate(); }, {"orphan", "no member"});
    }
    SUBCASE("no groups at all") {
        expect_error([&] { net.validate(); }, {"no groups"});
    }
    SUBCASE("an output channel claimed by two groups") {
        net.add_group("first", 3).member(a, 0);
        net.add_group("second", 2).member(a, 2);
        expect_error([&] { net.validate(); }, {"output channel 2", "'a'", "second", "at most one group"});
    }
    SUBCASE("an input channel claimed by two groups") {
        net.add_group("in1", 2).member(a, 0).consumer(c, 0);
        net.add_group("in2", 2).member(a, 2).consumer(c, 1);
        expect_error([&] { net.validate(); }, {"input channel 1", "cost_only", "in2"});
    }
    SUBCASE("members with and without batch norm") {
        net.add_group("mixed", 4).member(a).member(b);
        expect_error([&] { net.validate(); }, {"mixed", "b_bn", "batch norm"});
    }
    SUBCASE("disjoint claims are fine") {
        net.add_group("lo", 2).member(a, 0).consumer(c, 0);
        net.add_group("hi", 2).member(a, 2).consumer(c, 2);
        net.add_group("bn", 4).member(b);
        CHECK_NOTHROW(net.validate());
        CHECK(net.find_group("hi") == 1);
        expect_error([&] { (void)net.find_group("nope"); }, {"nope"});
        expect_error([&] { (void)net.find_layer("nope_layer"); }, {"nope_layer"});
    }
}

TEST_CASE("member_of slices a member to the group's channels") {
    layer_spec l{
        .name = "conv", .out = 6, .in = 2, .kernel_area = 3, .positions = 4, .bias = true, .bn = true, .gate_grad = true};
    model_spec spec{{l}, {{"lo", 2, {{"conv", 0}}, {}}, {"hi", 4, {{"conv", 2}}, {}}}};
    model<float> m(spec);
    auto& ol = m.layer("conv");
    const auto mv = psap::member_of(m.net(), 1, 0);
    CHECK(mv.source->name == "conv");
    CHECK(mv.weight.rows() == 4);
    CHECK(mv.weight.cols() == 6);
    CHECK(mv.weight.data() == ol.w.data() + 2 * 6);
    CHECK(mv.grad.data() == ol.gw.data() + 2 * 6);
    CHECK(mv.bias.data() == ol.b.data() + 2);
    CHECK(mv.bias.size() == 4);
    REQUIRE(mv.bn.has_value());
    CHECK(mv.bn->gamma.data() == ol.gamma.data() + 2);
    CHECK(mv.bn->running_var.data() == ol.var.data() + 2);
    CHECK(mv.bn->gate_grad.data() == ol.gate.data() + 2);
    CHECK(mv.bn->gate_grad.size() == 4);
}

TEST_CASE("a layer changed through layer_at() after it was added: validate() and member_of() refuse it, naming the layer") {
    layer_spec l{.name = "conv", .out = 6, .in = 2, .kernel_area = 3, .positions = 4, .bias = true, .bn = true};
    model_spec spec{{l}, {{"lo", 2, {{"conv", 0}}, {}}, {"hi", 4, {{"conv", 2}}, {}}}};
    SUBCASE("fewer output channels than the groups claim") {
        model<float> m(spec);
        m.net().layer_at(0).out_channels = 4;  // the views still have 6 rows
        expect_error([&] { m.net().validate(); }, {"layer 'conv'", "weight view is 6 x 6", "expected 4 x 6"});
    }
    SUBCASE("fewer output channels, views re-pointed to match: the groups no longer fit") {
        model<float> m(spec);
        auto& layer = m.net().layer_at(0);
        layer.out_channels = 4;
        layer.weight = layer.weight.middle_rows(0, 4);
        layer.grad = layer.grad.middle_rows(0, 4);
        for (auto* v : {&layer.bias, &layer.grad_bias})
            if (!v->empty()) *v = v->segment(0, 4);
        auto& bn = *layer.bn;
        for (auto* v : {&bn.gamma, &bn.beta, &bn.running_mean, &bn.running_var, &bn.grad_gamma, &bn.grad_beta, &bn.gate_grad})
            if (!v->empty()) *v = v->segment(0, 4);
        expect_error([&] { m.net().validate(); }, {"group 'hi'", "does not fit in the 4 output channels", "layer 'conv'"});
    }
    SUBCASE("a view re-pointed to a shorter buffer") {
        model<float> m(spec);
        std::vector<float> small(4 * 6, 0.f);
        m.net().layer_at(0).weight = psap::filters(small.data(), 4, 6);
        CHECK_NOTHROW((void)psap::member_of(m.net(), 0, 0));  // channels 0..1 lie inside 4 rows
        expect_error([&] { (void)psap::member_of(m.net(), 1, 0); },
                     {"layer 'conv'", "weight view has 4", "group 'hi'", "channels 2 to 5", "layer_at()"});
        m.net().layer_at(0).weight = psap::filters(m.layer("conv").w.data(), 6, 6);
        m.net().layer_at(0).bn->gamma = psap::channels(small.data(), 3);
        expect_error([&] { (void)psap::member_of(m.net(), 1, 0); }, {"batch-norm vector has 3", "group 'hi'"});
    }
}

TEST_CASE("the fingerprint follows structure, not values or storage") {
    layer_spec a{.name = "a", .out = 6, .in = 3, .kernel_area = 9, .positions = 16, .bn = true};
    layer_spec b{.name = "b", .out = 4, .in = 6, .kernel_area = 9, .positions = 16};
    const model_spec spec{{a, b}, {{"g", 6, {{"a", 0}}, {{"b", 0}}}}};
    model<float> m1(spec), m2(spec);
    m1.fill_random(psap_test::seed());
    m2.fill_random(psap_test::seed() + 1);
    CHECK(m1.net().fingerprint() == m2.net().fingerprint());
    auto other = spec;
    other.groups[0].size = 5;
    other.groups[0].members[0].offset = 1;
    model<float> m3(other);
    CHECK(m3.net().fingerprint() != m1.net().fingerprint());
    auto renamed = spec;
    renamed.groups[0].name = "h";
    model<float> m4(renamed);
    CHECK(m4.net().fingerprint() != m1.net().fingerprint());
}

}  // namespace
