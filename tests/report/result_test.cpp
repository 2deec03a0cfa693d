// What finalize() reports (report/result.hpp): Li et al.'s ResNet-56-pruned-A
// run through a pruner end to end (a custom schedule holding the paper's
// widths, the L1 criterion, hard masks): keep-lists are the largest-L1 filters
// of each layer, the per-layer widths and totals match the paper's 10.4%, and
// the JSON, CSV and table say the same thing.
#include <psap/policy/criterion/lp_norm.hpp>
#include <psap/policy/protect/none.hpp>
#include <psap/policy/reconstruct/hard.hpp>
#include <psap/policy/schedule/allocate.hpp>
#include <psap/pruner.hpp>
#include <psap/report/result.hpp>

#include <support/model.hpp>
#include <support/resnet.hpp>
#include <support/seed.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace {

using psap::index;
using namespace psap_test;

/// A user-written schedule: fixed kept widths per group size (PFEC's one-shot plan).
struct li_widths {
    std::map<index, index> kept_of_size;
    template <class Net>
    void plan(const Net&, const psap::step_context& ctx, psap::schedule_plan& p) const {
        const auto sizes = ctx.costs.group_sizes();
        for (std::size_t g = 0; g < sizes.size(); ++g) {
            p.count[g] = sizes[g] - kept_of_size.at(sizes[g]);
            p.ratio[g] = double(p.count[g]) / double(sizes[g]);
        }
        p.budget_now = psap::achieved_reduction(ctx.costs, ctx.target.kind, p.count);
    }
};
static_assert(psap::schedule_for<li_widths, psap::network<float>>);

TEST_CASE("Li et al. ResNet-56-pruned-A end to end: keep-lists, widths, totals, JSON, CSV and table") {
    model<float> m(cifar_resnet({.n = 9, .skip_layers = {16, 20, 38, 54}}));
    m.fill_random(psap_test::seed());
    psap::pruner<li_widths, psap::l1_norm, psap::no_protection, psap::hard> p({{psap::budget_kind::flops, 0.1}, 1},
                                                                              li_widths{{{16, 14}, {32, 28}, {64, 57}}});
    // L1 norm of every conv1 filter before pruning
    std::map<std::string, std::vector<double>> l1;
    for (const auto& g : m.net().groups()) {
        auto& l = m.layer(g.name + "c1");
        auto& v = l1[g.name];
        v.assign(static_cast<std::size_t>(g.size), 0.0);
        for (index f = 0; f < g.size; ++f)
            for (index j = 0; j < l.fan_in(); ++j) v[static_cast<std::size_t>(f)] += std::abs(double(l.weight(f, j)));
    }
    const auto& entry = p.step(m.net(), 1);
    const auto r = p.finalize(m.net());

    // totals: 13,049,856 of 125,485,696 MACs and 79,682 of 853,018 params removed (see budget_test.cpp)
    CHECK(r.before.macs == 125'485'696);
    CHECK(r.after.macs == 125'485'696 - 13'049'856);
    CHECK(r.after.params == 853'018 - 79'682);
    CHECK(entry.achieved == r.after);
    CHECK(std::round(r.reduction(psap::budget_kind::flops) * 1000) / 10 == doctest::Approx(10.4));

    // keep-lists: each conv1 keeps its largest-L1 filters (random weights: no ties), ascending,
    // and hard masks zeroed exactly the others
    REQUIRE(r.groups.size() == 23);
    for (const auto& g : r.groups) {
        CAPTURE(g.group);
        const auto& v = l1.at(g.group);
        std::vector<index> order(v.size());
        std::iota(order.begin(), order.end(), index{0});
        std::stable_sort(order.begin(), order.end(), [&](index a, index b) { return v[std::size_t(a)] > v[std::size_t(b)]; });
        const index kept = g.size == 16 ? 14 : g.size == 32 ? 28 : 57;
        std::vector<index> expect(order.begin(), order.begin() + kept);
        std::sort(expect.begin(), expect.end());
        CHECK(g.kept == expect);
        auto& l = m.layer(g.group + "c1");
        for (index f = 0; f < g.size; ++f) {
            double now = 0;
            for (index j = 0; j < l.fan_in(); ++j) now += std::abs(double(l.weight(f, j)));
            CHECK((now == 0) == !std::binary_search(g.kept.begin(), g.kept.end(), f));
        }
    }

    // per-layer widths: s1b1c1 16 -> 14 out, s1b1c2 16 -> 14 in; skipped block s1b8 untouched
    std::map<std::string, psap::cost_model::layer_width> w;
    for (const auto& l : r.layers) w.emplace(l.name, l);
    CHECK(w.at("s1b1c1").out_after == 14);
    CHECK(w.at("s1b1c1").in_after == 16);
    CHECK(w.at("s1b1c2").in_after == 14);
    CHECK(w.at("s1b1c2").macs_after == 16 * 14 * 9 * 1024);
    CHECK(w.at("s1b8c1").out_after == 16);
    CHECK(w.at("s3b9c2").in_after == 64);
    CHECK(w.at("s3b2c2").in_after == 57);
    std::int64_t macs = 0, params = 0;
    for (const auto& l : r.layers) macs += l.macs_after, params += l.params_after;
    CHECK(macs == r.after.macs);
    CHECK(params == r.after.params);

    // JSON
    const auto j = r.to_json();
    CHECK(j.at("macs").at("before") == 125'485'696);
    CHECK(j.at("macs").at("after") == r.after.macs);
    CHECK(j.at("params").at("reduction") == doctest::Approx(79'682.0 / 853'018.0));
    CHECK(j.at("groups").size() == 23);
    CHECK(j.at("layers").size() == r.layers.size());
    CHECK(j.at("groups").at(0).at("kept").size() == 14);

    // CSV: a header and one row per layer, the row's numbers those of the widths
    const auto csv = r.to_csv();
    std::istringstream is(csv);
    std::string line;
    std::vector<std::string> lines;
    while (std::getline(is, line)) lines.push_back(line);
    REQUIRE(lines.size() == r.layers.size() + 1);
    CHECK(lines[0].rfind("layer,out_before,out_after", 0) == 0);
    bool found = false;
    for (const auto& l : lines)
        if (l.rfind("s2b2c1,", 0) == 0) {
            found = true;
            CHECK(l.find(",32,28,") != std::string::npos);
            CHECK(l.find(std::to_string(28 * 32 * 9 * 256)) != std::string::npos);
        }
    CHECK(found);

    // table: the totals line
    const auto t = r.table();
    CHECK(t.find("MACs -10.40%") != std::string::npos);
    CHECK(t.find("params -9.34%") != std::string::npos);
}

TEST_CASE("CSV quotes names with commas or quotes; the table keeps a long name's row whole") {
    psap::pruning_result r;
    const std::string longer(300, 'x');
    for (const std::string& name : {std::string("conv,1"), std::string("say \"hi\""), longer})
        r.layers.push_back({name, 8, 4, 3, 3, 100, 50, 20, 10});
    std::istringstream csv(r.to_csv());
    std::string line;
    std::vector<std::string> lines;
    while (std::getline(csv, line)) lines.push_back(line);
    REQUIRE(lines.size() == 4);
    CHECK(lines[1].rfind("\"conv,1\",8,4,", 0) == 0);
    CHECK(lines[2].rfind("\"say \"\"hi\"\"\",8,4,", 0) == 0);
    CHECK(lines[3].rfind(longer + ",8,4,", 0) == 0);
    // every row keeps its 10 fields (commas outside quotes)
    for (std::size_t i = 1; i < lines.size(); ++i) {
        int commas = 0;
        bool quoted = false;
        for (char c : lines[i]) {
            if (c == '"') quoted = !quoted;
            commas += !quoted && c == ',';
        }
        CHECK(commas == 9);
    }
    const auto t = r.table();
    const auto at = t.find(longer);
    REQUIRE(at != std::string::npos);
    const auto end = t.find('\n', at);
    CHECK(t.substr(at + longer.size(), end - at - longer.size()).find("4/8") != std::string::npos);  // the row's numbers follow
}

}  // namespace
