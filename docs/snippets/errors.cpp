// Bad input (docs/integration.md, "Errors"): psap throws psap::error (a
// std::runtime_error) whose message names the layer or group, the value and
// the fix. Each case below is one mistake and the message it gets.
// `errors messages` prints the messages shown in the docs.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <psap/psap.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace {

struct fixture {
    std::vector<float> w = std::vector<float>(8 * 9, 1.f), w2 = std::vector<float>(4 * 72, 1.f);
    psap::network<float> net;
    fixture() {
        for (std::size_t i = 0; i < w.size(); ++i) w[i] = float(i % 9 + 1);
        const auto a = net.add_layer({.name = "conv1", .out_channels = 8, .in_channels = 1, .kernel_area = 9, .out_positions = 16,
                                      .weight = psap::filters(w.data(), 8, 9)});
        const auto b = net.add_layer({.name = "conv2", .out_channels = 4, .in_channels = 8, .kernel_area = 9, .out_positions = 16,
                                      .weight = psap::filters(w2.data(), 4, 72)});
        net.add_group("conv1", 8).member(a).consumer(b);
    }
};

/// The message of the psap::error `f` throws ("" when it throws none).
std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const psap::error& e) {
        return e.what();
    }
    return "";
}

/// One mistake each, in the order the docs list them.
std::vector<std::pair<const char*, std::function<void()>>> mistakes() {
    return {
        {"weight view of the wrong shape",
         [] {
             std::vector<float> w(8 * 8);
             psap::network<float> net;
             net.add_layer({.name = "conv1", .out_channels = 8, .in_channels = 1, .kernel_area = 9, .weight = psap::filters(w.data(), 8, 8)});
         }},
        {"group larger than its member",
         [] {
             fixture f;
             f.net.add_group("too_big", 16).member(0);
         }},
        {"channel in two groups",
         [] {
             fixture f;
             f.net.add_group("again", 8).member(0);
             f.net.validate();
         }},
        {"unreachable budget",
         [] {
             fixture f;  // only conv1's channels are prunable, and a group keeps one channel
             psap::presets::sfp({psap::budget_kind::flops, 0.95}, 10).step(f.net, 0);
         }},
        {"diverged training",
         [] {
             fixture f;
             f.w[20] = std::numeric_limits<float>::quiet_NaN();
             psap::presets::sfp({psap::budget_kind::flops, 0.3}, 10).step(f.net, 1);
         }},
        {"unknown parameter",
         [] { psap::make_pruner(nlohmann::json::parse(R"({"preset": "psap", "schedule": {"etta": 0.3}})")); }},
        {"state from another network",
         [] {
             fixture f, g;
             auto p = psap::presets::sfp({psap::budget_kind::flops, 0.3}, 10);
             p.step(f.net, 0);
             g.net.add_layer({.name = "extra", .out_channels = 1, .in_channels = 1});
             psap::presets::sfp({psap::budget_kind::flops, 0.3}, 10).load_state(g.net, p.state());
         }},
    };
}

}  // namespace

TEST_CASE("every mistake gets a psap::error naming what to fix") {
    const std::vector<std::pair<const char*, const char*>> expected{
        {"weight view of the wrong shape", "weight view is 8 x 8, expected 8 x 9"},
        {"group larger than its member", "does not fit in the 8 output channels of layer 'conv1'"},
        {"channel in two groups", "is claimed twice"},
        {"unreachable budget", "cannot be met"},
        {"diverged training", "layer 'conv1' has a NaN or Inf weight in filter 2"},
        {"unknown parameter", "has no parameter 'etta'"},
        {"state from another network", "saved from another network"},
    };
    const auto cases = mistakes();
    REQUIRE(cases.size() == expected.size());
    for (std::size_t i = 0; i < cases.size(); ++i) {
        CAPTURE(cases[i].first);
        const std::string msg = message_of(cases[i].second);
        CHECK(msg.find(expected[i].second) != std::string::npos);
    }
}

TEST_CASE("psap::error is a std::runtime_error") {
    // [catch-errors]
    try {
        psap::make_pruner(nlohmann::json::parse(R"({"preset": "sfpp"})"));
    } catch (const psap::error& e) {  // or std::runtime_error, or std::exception
        std::fprintf(stderr, "%s\n", e.what());
    }
    // [catch-errors]
    CHECK_THROWS_AS(psap::make_pruner(nlohmann::json::parse(R"({"preset": "sfpp"})")), std::runtime_error);
}

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "messages") == 0) {
        for (const auto& [what, f] : mistakes()) std::printf("%s:\n  %s\n", what, message_of(f).c_str());
        return 0;
    }
    doctest::Context ctx(argc, argv);
    return ctx.run();
}
