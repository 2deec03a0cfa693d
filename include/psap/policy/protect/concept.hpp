#pragma once
/// \file concept.hpp
/// The protector family: which pruned channels come back, and which active
/// channels may not be pruned at this step.

#include <psap/policy/context.hpp>

#include <concepts>
#include <span>
#include <vector>

namespace psap {

/// restores() lists, per group, pruned channels to restore now (strongest
/// first); shield() lists, per group, active channels that are not pruning
/// candidates, given this step's counts q_g.
///
/// Semantics: restores() names only currently pruned channels, shield() only
/// active ones; per group, restored + shielded <= size - q_g, so the quota is
/// always reachable (the pruner trims restores beyond that, weakest first);
/// a protector never adds to the pruned set; in the final phase both lists
/// are empty.
template <class P, class Net>
concept protector_for = std::copy_constructible<P> &&
                        requires(P& p, const Net& net, const step_context& ctx, std::span<std::vector<index>> out,
                                 std::span<const index> counts) {
                            p.restores(net, ctx, out);
                            p.shield(net, ctx, counts, out);
                        };

/// The smallest protector: protects nothing.
struct protector_archetype {
    template <class Net>
    void restores(const Net&, const step_context&, std::span<std::vector<index>>) {}
    template <class Net>
    void shield(const Net&, const step_context&, std::span<const index>, std::span<std::vector<index>>) {}
};

}  // namespace psap
