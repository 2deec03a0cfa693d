#pragma once
/// \file soft.hpp
/// SFP (He et al., IJCAI 2018): pruned filters are zeroed at each step and
/// keep training in between, so they can regrow ("reconstruction"); batch
/// norm is not touched. With mask_gradients (FPGM's code) the gradients of
/// pruned filters are zeroed within the epoch too.
///
/// Under train-mode batch norm a zeroed filter is dead (beta <= 0) or
/// explodes (beta > 0); started at init it is a static mask. Kept as the
/// baseline it is; see docs/psap.md.

#include <psap/policy/reconstruct/concept.hpp>

namespace psap {

struct soft {
    bool mask_gradients = false;

    static constexpr const char* name = "soft";

    template <class V>
    void fields(V&& v) {
        v("mask_gradients", mask_gradients);
    }

    template <class Net>
    void apply(const Net& net, const step_context&, std::span<const group_update> updates, snapshot_store<Net>& snaps) const {
        std::vector<std::span<const index>> pruned(updates.size());
        for (std::size_t gi = 0; gi < updates.size(); ++gi) {
            const auto g = static_cast<index>(gi);
            const auto& u = updates[gi];
            if (!u.newly_pruned.empty()) snaps.save(net, g, u.newly_pruned);
            if (!u.restored.empty()) snaps.restore(net, g, u.restored, snapshot_store<Net>::filters);
            pruned[gi] = u.pruned;
        }
        // groups own disjoint channels: zeroing after every group's copies is the same
        detail::zero_filters_all(net, pruned, [](std::size_t) { return true; });
    }

    template <class Net>
    void after_update(const Net&, std::span<const group_state>, snapshot_store<Net>&) const {}

    template <class Net>
    void mask_gradients_of(const Net& net, std::span<const group_state> groups) const {
        if (!mask_gradients) return;
        const detail::channel_lists pruned(groups);
        detail::zero_gradients_all(net, pruned.lists, false);
    }
};

}  // namespace psap
