#pragma once
// Drives one policy by hand: the step_context / observe_context the pruner
// would build, with the state (masks, ratios, restores, scores) set by the test.
#include <psap/network/budget.hpp>
#include <psap/policy/context.hpp>
#include <psap/policy/reconstruct/snapshot_store.hpp>

#include <cstdint>
#include <span>
#include <vector>

namespace psap_test {

template <class Net>
struct harness {
    const Net& net;
    psap::cost_model costs;
    psap::budget target;
    psap::step_info info{};
    std::vector<psap::group_state> groups;
    std::vector<std::vector<psap::index>> restored;  ///< empty: no restores in the context
    std::vector<std::vector<double>> scores;         ///< empty: no scores in the context
    psap::index keep_multiple = 1;
    psap::snapshot_store<Net> snapshots;
    psap::observe_info oinfo{};

    explicit harness(const Net& n, psap::budget b = {}) : net(n), costs(n), target(b) {
        for (const auto& g : n.groups())
            groups.push_back({std::vector<std::uint8_t>(static_cast<std::size_t>(g.size), 0), 0.0, 0.0});
        snapshots.bind(n);
    }

    psap::step_context ctx() const {
        psap::step_context c{costs, target, info, groups, keep_multiple};
        if (!restored.empty()) c.restored = restored;
        if (!scores.empty()) c.scores = scores;
        return c;
    }
    psap::observe_context<Net> octx() { return {oinfo, groups, snapshots}; }

    /// Marks channels of group g pruned (1) or active (0).
    void set_pruned(std::size_t g, std::initializer_list<psap::index> channels) {
        for (psap::index c : channels) groups[g].pruned[static_cast<std::size_t>(c)] = 1;
    }
    /// A fresh plan sized like the pruner does before calling a schedule.
    psap::schedule_plan new_plan() const {
        psap::schedule_plan p;
        p.resize(groups.size());
        return p;
    }
    std::vector<std::vector<double>> new_scores() const {
        std::vector<std::vector<double>> s;
        for (const auto& g : groups) s.emplace_back(g.pruned.size(), 0.0);
        return s;
    }
    std::vector<std::vector<psap::index>> new_lists() const { return std::vector<std::vector<psap::index>>(groups.size()); }
};

}  // namespace psap_test
