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
        for (std::size_t gi = 0; gi < updates.size(); ++gi) {
            const auto g = static_cast<index>(gi);
            const auto& u = updates[gi];
            if (!u.newly_pruned.empty()) snaps.save(net, g, u.newly_pruned);
            if (!u.restored.empty()) snaps.restore(net, g, u.restored);
            if (!u.released.empty()) snaps.restore(net, g, u.released);
            zero(net, g, u.pruned);
        }
    }

    template <class Net>
    void after_update(const Net& net, std::span<const group_state> groups, snapshot_store<Net>&) const {
        for (std::size_t gi = 0; gi < groups.size(); ++gi) zero(net, static_cast<index>(gi), detail::pruned_list(groups[gi]));
    }

    template <class Net>
    void mask_gradients_of(const Net& net, std::span<const group_state> groups) const {
        for (std::size_t gi = 0; gi < groups.size(); ++gi) {
            const auto pruned = detail::pruned_list(groups[gi]);
            if (!pruned.empty()) detail::zero_gradients(net, static_cast<index>(gi), pruned, true);
        }
    }

private:
    template <class Net>
    static void zero(const Net& net, index g, std::span<const index> ch) {
        if (ch.empty()) return;
        detail::scale_filters(net, g, ch, typename Net::value_type(0));
        detail::scale_bn(net, g, ch, typename Net::value_type(0));
    }
};

}  // namespace psap
