#pragma once
/// \file asymptotic.hpp
/// ASFP (He et al., T-Cyb 2019): a uniform ratio whose budget rises
/// asymptotically, B_t = B (1 - 4^(-8x)) / (1 - 4^(-8)), x = progress / ramp_end.

#include <psap/policy/schedule/uniform.hpp>

namespace psap {

struct asymptotic {
    double ramp_end = 1.0;
    double p_max = 0.95;

    static constexpr const char* name = "asymptotic";

    template <class V>
    void fields(V&& v) {
        v("ramp_end", ramp_end);
        v("p_max", p_max);
    }

    template <class Net>
    void plan(const Net&, const step_context& ctx, schedule_plan& plan) const {
        uniform::plan_uniform(ctx, plan, ramp_shape::asymptotic, ramp_end, p_max, -1, name);
    }
};

}  // namespace psap
