#pragma once
/// \file agp.hpp
/// AGP (Zhu & Gupta 2017): a uniform ratio whose budget follows the cubic
/// s_t = s_f (1 - (1 - x)^3), x = progress / ramp_end.

#include <psap/policy/schedule/uniform.hpp>

namespace psap {

struct agp {
    double ramp_end = 1.0;
    double p_max = 0.95;

    static constexpr const char* name = "agp";

    template <class V>
    void fields(V&& v) {
        v("ramp_end", ramp_end);
        v("p_max", p_max);
    }

    template <class Net>
    void plan(const Net&, const step_context& ctx, schedule_plan& plan) const {
        uniform::plan_uniform(ctx, plan, ramp_shape::cubic, ramp_end, p_max, -1, name);
    }
};

}  // namespace psap
