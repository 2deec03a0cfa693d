#pragma once
/// \file concept.hpp
/// The criterion family: how important each channel of a group is.

#include <psap/policy/context.hpp>

#include <concepts>
#include <span>
#include <vector>

namespace psap {

/// A criterion writes one score per channel of every group into `scores`
/// (pre-sized: scores[g].size() == size of group g). Lower scores are pruned
/// first; ties break by channel index.
///
/// Semantics: scores are finite and non-negative; they are a pure function of
/// the network, the context and the criterion's accumulated statistics (a
/// seeded criterion includes its seed); a criterion that accumulates
/// gradients does so in an optional observe() and starts afresh after step().
template <class C, class Net>
concept criterion_for = std::copy_constructible<C> &&
                        requires(C& c, const Net& net, const step_context& ctx, std::span<std::vector<double>> scores) {
                            c.score(net, ctx, scores);
                        };

/// A criterion whose score of a channel is NaN or Inf whenever a weight of
/// any member filter of the channel is (its norm enters the score) may declare
/// `static constexpr bool reveals_nonfinite_weights = true;`. The pruner then
/// skips its own finiteness scan of the weights the scores cover, and scans
/// them only when a score comes out non-finite, to name the layer and filter:
/// one pass over those bytes per step instead of two.
template <class C>
inline constexpr bool reveals_nonfinite_weights = requires { requires C::reveals_nonfinite_weights; };

/// The smallest criterion: every channel scores 0, so the lowest indices go first.
struct criterion_archetype {
    template <class Net>
    void score(const Net&, const step_context&, std::span<std::vector<double>> scores) {
        for (auto& s : scores) std::fill(s.begin(), s.end(), 0.0);
    }
};

}  // namespace psap
