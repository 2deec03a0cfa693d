#pragma once
/// \file step_log.hpp
/// The decision log: what every step decided, per group, as a struct and JSON.

#include <psap/network/budget.hpp>
#include <psap/policy/context.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace psap {

/// One group at one step.
struct group_decision {
    std::string group;
    index size = 0;
    double sparsity = not_measured;  ///< s_g (not_measured when the schedule has none)
    double pressure = not_measured;  ///< r_g
    double ratio = 0;                ///< p_g
    index target = 0;                ///< q_g asked by the schedule
    index pruned = 0;                ///< pruned after the step
    index newly_pruned = 0;          ///< churn: active channels pruned at this step
    index restored = 0;              ///< pruned channels restored by the protector
    index released = 0;              ///< pruned channels no longer selected
    index pulses = 0;                ///< restore candidates before the cap (protector diagnostic)
    index protected_count = 0;       ///< active channels shielded
    index protected_effective = 0;   ///< of those, how many the unshielded selection would have pruned
};

/// One step.
struct step_log {
    index step = 0;
    double epoch = 0;
    double progress = 0;
    bool frozen = false;        ///< final phase: masks unchanged
    double budget_now = 0;      ///< B_t
    double mu = not_measured;
    bool relaxed = false;
    cost achieved;              ///< cost of the network under the masks after the step
    double reduction = 0;       ///< fraction of the budget's kind removed after the step
    std::vector<group_decision> groups;

    index churn() const {
        index c = 0;
        for (const auto& g : groups) c += g.newly_pruned;
        return c;
    }
};

namespace detail {
inline nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
}  // namespace detail

inline void to_json(nlohmann::json& j, const group_decision& d) {
    j = {{"group", d.group},
         {"size", d.size},
         {"sparsity", detail::number_or_null(d.sparsity)},
         {"pressure", detail::number_or_null(d.pressure)},
         {"ratio", d.ratio},
         {"target", d.target},
         {"pruned", d.pruned},
         {"newly_pruned", d.newly_pruned},
         {"restored", d.restored},
         {"released", d.released},
         {"pulses", d.pulses},
         {"protected", d.protected_count},
         {"protected_effective", d.protected_effective}};
}

inline void to_json(nlohmann::json& j, const step_log& s) {
    j = {{"step", s.step},
         {"epoch", s.epoch},
         {"progress", s.progress},
         {"frozen", s.frozen},
         {"budget", s.budget_now},
         {"mu", detail::number_or_null(s.mu)},
         {"relaxed", s.relaxed},
         {"macs", s.achieved.macs},
         {"params", s.achieved.params},
         {"filters", s.achieved.filters},
         {"reduction", s.reduction},
         {"churn", s.churn()},
         {"groups", s.groups}};
}

}  // namespace psap
