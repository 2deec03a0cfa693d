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

        // Ties break by group name then channel: independent of the order groups
        // were added in. Names are unique, so their rank stands in for them.
        std::vector<index> by_name(n), rank(n);
        for (std::size_t g = 0; g < n; ++g) by_name[g] = static_cast<index>(g);
        std::sort(by_name.begin(), by_name.end(), [&](index a, index b) {
            return net.groups()[static_cast<std::size_t>(a)].name < net.groups()[static_cast<std::size_t>(b)].name;
        });
        for (std::size_t r = 0; r < n; ++r) rank[static_cast<std::size_t>(by_name[r])] = static_cast<index>(r);
        struct entry {
            double score;
            index rank, g, c;
        };
        std::vector<entry> all;
        for (std::size_t g = 0; g < n; ++g)
            for (index c = 0; c < sizes[g]; ++c)
                all.push_back({ctx.scores[g][static_cast<std::size_t>(c)], rank[g], static_cast<index>(g), c});
        std::sort(all.begin(), all.end(), [](const entry& a, const entry& b) {
            if (a.score != b.score) return a.score < b.score;
            if (a.rank != b.rank) return a.rank < b.rank;
            return a.c < b.c;
        });
        // Walk the ranking: each channel raises its group's count (kept rounded
        // up to keep_multiple) unless that passes the group's cap. taken_q[e] is
        // the group's count after entry e, or -1 when the entry is skipped.
        std::vector<index> cap(n), taken(n, 0), taken_q(all.size(), -1);
        for (std::size_t g = 0; g < n; ++g) cap[g] = pruned_count(p_max, sizes[g], ctx.keep_multiple);
        for (std::size_t e = 0; e < all.size(); ++e) {
            const auto g = static_cast<std::size_t>(all[e].g);
            const index q = pruned_count(static_cast<double>(taken[g] + 1) / static_cast<double>(sizes[g]), sizes[g], ctx.keep_multiple);
            if (q > cap[g]) continue;
            ++taken[g];
            taken_q[e] = q;
        }
        // The first prefix of the walk whose counts meet B_t: the reduction only
        // grows along the walk, so a bisection finds it with O(log N) cost evaluations.
        auto counts_after = [&](std::size_t m) {
            std::fill(plan.count.begin(), plan.count.end(), index{0});
            for (std::size_t e = 0; e < m; ++e)
                if (taken_q[e] >= 0) plan.count[static_cast<std::size_t>(all[e].g)] = taken_q[e];
        };
        auto met_after = [&](std::size_t m) {
            counts_after(m);
            return achieved_reduction(ctx.costs, ctx.target.kind, plan.count) >= plan.budget_now;
        };
        std::size_t lo_m = 0, hi_m = all.size();  // met_after(hi_m) is tested below; the answer lies in [lo_m, hi_m]
        const bool met = met_after(hi_m);
        if (met) {
            while (lo_m < hi_m) {
                const std::size_t mid = lo_m + (hi_m - lo_m) / 2;
                if (met_after(mid))
                    hi_m = mid;
                else
                    lo_m = mid + 1;
            }
        }
        counts_after(hi_m);
        if (!met) fail_budget(name, ctx.target.kind, plan.budget_now, achieved_reduction(ctx.costs, ctx.target.kind, plan.count), p_max);
        for (std::size_t g = 0; g < n; ++g) plan.ratio[g] = static_cast<double>(plan.count[g]) / static_cast<double>(sizes[g]);
    }
};

}  // namespace psap
