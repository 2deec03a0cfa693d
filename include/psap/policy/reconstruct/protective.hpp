#pragma once
/// \file protective.hpp
/// PSAP's reconstruction (docs/psap.md, step 1): a pruned channel that feeds
/// batch norm is gated, gamma = beta = 0, held after every optimizer step, so
/// it outputs exactly 0; its conv filter is untouched and (hold_filters) kept
/// at its snapshot, so weight decay cannot erase what it learned. A channel
/// without batch norm is zeroed (filter and bias) and held at zero. Restored
/// and released channels get their snapshot back.
///
/// Why not zero the conv filter in front of BN (SFP): in train mode a zero
/// filter gives its channel zero variance, so the channel is either dead
/// (beta <= 0) or its gradient is ~gamma/sqrt(eps) times a kept filter's
/// (beta > 0); see docs/psap.md and tests/policy/reconstruct_test.cpp.

#include <psap/policy/reconstruct/concept.hpp>

namespace psap {

struct protective {
    bool hold_filters = true;

    static constexpr const char* name = "protective";

    template <class V>
    void fields(V&& v) {
        v("hold_filters", hold_filters);
    }

    template <class Net>
    void apply(const Net& net, const step_context&, std::span<const group_update> updates, snapshot_store<Net>& snaps) const {
        for (std::size_t gi = 0; gi < updates.size(); ++gi) {
            const auto g = static_cast<index>(gi);
            const auto& u = updates[gi];
            if (!u.newly_pruned.empty()) snaps.save(net, g, u.newly_pruned);
            if (!u.restored.empty()) snaps.restore(net, g, u.restored);
            if (!u.released.empty()) snaps.restore(net, g, u.released);
            gate(net, g, u.pruned);
        }
    }

    template <class Net>
    void after_update(const Net& net, std::span<const group_state> groups, snapshot_store<Net>& snaps) const {
        // All groups at once: one batched call for the filter rows.
        const detail::channel_lists pruned(groups);
        auto bn = [&](std::size_t g) { return measure::has_bn(net, static_cast<index>(g)); };
        detail::zero_bn_all(net, pruned.lists, bn);
        detail::zero_filters_all(net, pruned.lists, [&](std::size_t g) { return !bn(g); });
        if (hold_filters) {
            std::vector<std::span<const index>> held(pruned.lists.begin(), pruned.lists.end());
            for (std::size_t g = 0; g < held.size(); ++g)
                if (!bn(g)) held[g] = {};
            snaps.restore_all(net, held, snapshot_store<Net>::filters);
        }
    }

private:
    template <class Net>
    static void gate(const Net& net, index g, std::span<const index> ch) {
        if (measure::has_bn(net, g))
            detail::scale_bn(net, g, ch, typename Net::value_type(0));
        else
            detail::scale_filters(net, g, ch, typename Net::value_type(0));
    }
};

}  // namespace psap
