#pragma once
/// \file uniform.hpp
/// One ratio for every group (SFP, FPGM, random): the smallest common ratio
/// whose integer counts meet the (optionally ramped) budget, or a fixed ratio.

#include <psap/policy/context.hpp>
#include <psap/policy/schedule/allocate.hpp>
#include <psap/policy/schedule/ramp.hpp>

#include <vector>

namespace psap {

struct uniform {
    ramp_shape ramp = ramp_shape::constant;
    double ramp_end = 1.0;     ///< progress at which the ramp reaches the full budget
    double p_max = 0.95;       ///< no group prunes more than this ratio
    double fixed_ratio = -1;   ///< >= 0: prune this ratio everywhere and ignore the budget

    static constexpr const char* name = "uniform";

    /// Hyper-parameters by name (runtime configuration, logs).
    template <class V>
    void fields(V&& v) {
        v("ramp", ramp);
        v("ramp_end", ramp_end);
        v("p_max", p_max);
        v("fixed_ratio", fixed_ratio);
    }

    template <class Net>
    void plan(const Net&, const step_context& ctx, schedule_plan& plan) const {
        plan_uniform(ctx, plan, ramp, ramp_end, p_max, fixed_ratio, name);
    }

    /// Shared by uniform, asymptotic and agp: they differ only in the ramp.
    static void plan_uniform(const step_context& ctx, schedule_plan& plan, ramp_shape ramp, double ramp_end, double p_max,
                             double fixed_ratio, const char* who) {
        const auto sizes = ctx.costs.group_sizes();
        const std::size_t n = sizes.size();
        plan.resize(n);
        if (!(p_max >= 0 && p_max < 1))
            detail::fail("psap::", who, ": p_max ", p_max, " is outside [0, 1); it is the largest fraction of a group to prune");
        if (fixed_ratio >= 0) {
            if (fixed_ratio >= 1) detail::fail("psap::", who, ": fixed_ratio ", fixed_ratio, " is outside [0, 1)");
            const double r = fixed_ratio * ramp_fraction(ramp, ctx.info.progress, ramp_end);
            for (std::size_t g = 0; g < n; ++g) {
                plan.ratio[g] = r;
                plan.count[g] = pruned_count(r, sizes[g], ctx.keep_multiple);
            }
            plan.budget_now = achieved_reduction(ctx.costs, ctx.target.kind, plan.count);
            return;
        }
        plan.budget_now = ctx.target.target * ramp_fraction(ramp, ctx.info.progress, ramp_end);
        if (plan.budget_now <= 0) return;
        const std::vector<double> zero(n, 0.0), lo(n, 0.0), hi(n, p_max);
        auto a = allocate(ctx.costs, ctx.target.kind, plan.budget_now, zero, lo, hi, ctx.keep_multiple);
        if (!a.feasible)
            fail_budget(who, ctx.target.kind, plan.budget_now, achieved_reduction(ctx.costs, ctx.target.kind, a.count), p_max);
        plan.mu = a.mu;
        plan.ratio = std::move(a.ratio);
        plan.count = std::move(a.count);
    }
};

}  // namespace psap
