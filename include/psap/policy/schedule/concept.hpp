#pragma once
/// \file concept.hpp
/// The schedule family: how much of each group to prune at a step.

#include <psap/policy/context.hpp>

#include <concepts>

namespace psap {

/// A schedule fills `plan` (resized to one entry per group) with each group's
/// pruning ratio p_g and count q_g for this step.
///
/// Semantics: 0 <= count[g] < size of g (a group always keeps a channel);
/// the counts are a pure function of the network, the context and the
/// schedule's own state (same inputs, same plan); a schedule that meets a
/// budget reports the B_t it met in plan.budget_now.
template <class S, class Net>
concept schedule_for = std::copy_constructible<S> && requires(S& s, const Net& net, const step_context& ctx, schedule_plan& plan) {
    s.plan(net, ctx, plan);
};

/// The smallest schedule: prunes nothing.
struct schedule_archetype {
    template <class Net>
    void plan(const Net&, const step_context&, schedule_plan&) {}
};

}  // namespace psap
