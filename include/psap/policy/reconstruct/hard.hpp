#pragma once
/// \file hard.hpp
/// Hard masks (L1/PFEC, Taylor, HRank): a pruned channel's filter, bias and
/// BN gamma/beta are zero, their gradients are zeroed before every optimizer
/// step and the values re-zeroed after it, so the channel outputs exactly 0
/// from the step on and compaction is exact.

#include <psap/policy/reconstruct/concept.hpp>

namespace psap {

struct hard {
    static constexpr const char* name = "hard";

    template <class V>
    void fields(V&&) {}

    template <class Net>
    void apply(const Net& net, const step_context&, std::span<const group_update> updates, snapshot_store<Net>& snaps) const {
        std::vector<std::span<const index>> pruned(updates.size());
        for (std::size_t gi = 0; gi < updates.size(); ++gi) {
            const auto g = static_cast<index>(gi);
            const auto& u = updates[gi];
            if (!u.newly_pruned.empty()) snaps.save(net, g, u.newly_pruned);
            if (!u.restored.empty()) snaps.restore(net, g, u.restored);
            if (!u.released.empty()) snaps.restore(net, g, u.released);
            pruned[gi] = u.pruned;
        }
        zero_all(net, pruned);  // groups own disjoint channels: zeroing after every group's copies is the same
    }

    template <class Net>
    void after_update(const Net& net, std::span<const group_state> groups, snapshot_store<Net>&) const {
        const detail::channel_lists pruned(groups);
        zero_all(net, pruned.lists);
    }

    template <class Net>
    void mask_gradients_of(const Net& net, std::span<const group_state> groups) const {
        const detail::channel_lists pruned(groups);
        detail::zero_gradients_all(net, pruned.lists, true);
    }

private:
    template <class Net>
    static void zero_all(const Net& net, std::span<const std::span<const index>> ch) {
        auto all = [](std::size_t) { return true; };
        detail::zero_filters_all(net, ch, all);
        detail::zero_bn_all(net, ch, all);
    }
};

}  // namespace psap
