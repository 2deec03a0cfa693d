#pragma once
/// \file global_threshold.hpp
/// One threshold across all groups (Network Slimming, Liu 2017; Taylor-FO,
/// Molchanov 2019): channels are taken in ascending score order over the
/// whole network until B_t is met, so the ratios come out of the scores.
/// Scores must be comparable across groups (|gamma|, Taylor importance).

#include <psap/network/network.hpp>
#include <psap/policy/context.hpp>
#include <psap/policy/schedule/allocate.hpp>
#include <psap/policy/schedule/ramp.hpp>

#include <algorithm>
#include <string_view>
#include <vector>

namespace psap {

struct global_threshold {
    ramp_shape ramp = ramp_shape::constant;
    double ramp_end = 1.0;
    double p_max = 0.9;  ///< no group loses more than this ratio (a layer is never emptied)

    static constexpr const char* name = "global_threshold";

    template <class V>
    void fields(V&& v) {
        v("ramp", ramp);
        v("ramp_end", ramp_end);
        v("p_max", p_max);
    }

    template <class Net>
    void plan(const Net& net, const step_context& ctx, schedule_plan& plan) const {
        const auto sizes = ctx.costs.group_sizes();
        const std::size_t n = sizes.size();
        plan.resize(n);
        if (!(p_max >= 0 && p_max < 1))
            detail::fail("psap::global_threshold: p_max ", p_max, " is outside [0, 1); it is the largest fraction of a group to prune");
        plan.budget_now = ctx.target.target * ramp_fraction(ramp, ctx.info.progress, ramp_end);
        if (plan.budget_now <= 0) return;
        if (ctx.scores.size() != n) detail::fail("psap::global_threshold: needs criterion scores for every group");

        struct entry {
            double score;
            std::string_view group;
            index g, c;
        };
        std::vector<entry> all;
        for (std::size_t g = 0; g < n; ++g)
            for (index c = 0; c < sizes[g]; ++c)
                all.push_back({ctx.scores[g][static_cast<std::size_t>(c)], net.groups()[g].name, static_cast<index>(g), c});
        // Ties break by group name then channel: independent of the order groups were added in.
        std::sort(all.begin(), all.end(), [](const entry& a, const entry& b) {
            if (a.score != b.score) return a.score < b.score;
            if (a.group != b.group) return a.group < b.group;
            return a.c < b.c;
        });
        std::vector<index> cap(n), taken(n, 0);
        for (std::size_t g = 0; g < n; ++g) cap[g] = pruned_count(p_max, sizes[g], ctx.keep_multiple);
        bool met = false;
        for (const auto& e : all) {
            if (achieved_reduction(ctx.costs, ctx.target.kind, plan.count) >= plan.budget_now) {
                met = true;
                break;
            }
            // The group's count follows the channels taken from it, kept rounded up to keep_multiple.
            const auto g = static_cast<std::size_t>(e.g);
            const index q = pruned_count(static_cast<double>(taken[g] + 1) / static_cast<double>(sizes[g]), sizes[g], ctx.keep_multiple);
            if (q > cap[g]) continue;
            ++taken[g];
            plan.count[g] = q;
        }
        met = met || achieved_reduction(ctx.costs, ctx.target.kind, plan.count) >= plan.budget_now;
        if (!met) fail_budget(name, ctx.target.kind, plan.budget_now, achieved_reduction(ctx.costs, ctx.target.kind, plan.count), p_max);
        for (std::size_t g = 0; g < n; ++g) plan.ratio[g] = static_cast<double>(plan.count[g]) / static_cast<double>(sizes[g]);
    }
};

}  // namespace psap
