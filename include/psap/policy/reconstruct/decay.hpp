#pragma once
/// \file decay.hpp
/// Decay: a pruned channel is not cut at once but shrunk by `factor` after
/// every optimizer step (its BN gamma/beta when it feeds batch norm, else its
/// filter and bias), while gradients still flow; the network can shift the
/// channel's work elsewhere before it is gone. finalize() zeroes what is left.

#include <psap/policy/reconstruct/concept.hpp>

namespace psap {

struct decay {
    double factor = 0.9;  ///< per optimizer step; 0.9 leaves ~1e-5 after 100 steps

    static constexpr const char* name = "decay";

    template <class V>
    void fields(V&& v) {
        v("factor", factor);
    }

    template <class Net>
    void apply(const Net& net, const step_context&, std::span<const group_update> updates, snapshot_store<Net>& snaps) const {
        if (!(factor >= 0 && factor < 1)) detail::fail("psap::decay: factor ", factor, " is outside [0, 1)");
        for (std::size_t gi = 0; gi < updates.size(); ++gi) {
            const auto g = static_cast<index>(gi);
            const auto& u = updates[gi];
            if (!u.newly_pruned.empty()) snaps.save(net, g, u.newly_pruned);
            if (!u.restored.empty()) snaps.restore(net, g, u.restored);
            if (!u.released.empty()) snaps.restore(net, g, u.released);
        }
    }

    template <class Net>
    void after_update(const Net& net, std::span<const group_state> groups, snapshot_store<Net>&) const {
        scale_all(net, groups, static_cast<typename Net::value_type>(factor));
    }

    template <class Net>
    void finish(const Net& net, std::span<const group_state> groups, snapshot_store<Net>&) const {
        scale_all(net, groups, typename Net::value_type(0));
    }

private:
    template <class Net>
    static void scale_all(const Net& net, std::span<const group_state> groups, typename Net::value_type f) {
        for (std::size_t gi = 0; gi < groups.size(); ++gi) {
            const auto g = static_cast<index>(gi);
            const auto pruned = detail::pruned_list(groups[gi]);
            if (pruned.empty()) continue;
            if (measure::has_bn(net, g))
                detail::scale_bn(net, g, pruned, f);
            else
                detail::scale_filters(net, g, pruned, f);
        }
    }
};

}  // namespace psap
