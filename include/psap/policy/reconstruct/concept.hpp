#pragma once
/// \file concept.hpp
/// The reconstruction family: what pruning a channel does to the weights, and
/// what happens to a pruned channel between steps.

#include <psap/policy/context.hpp>
#include <psap/policy/measure.hpp>
#include <psap/policy/reconstruct/snapshot_store.hpp>

#include <concepts>
#include <cstddef>
#include <span>
#include <vector>

namespace psap {

/// apply() makes the network match this step's masks (saving snapshots of
/// newly pruned channels, restoring or releasing others); after_update() runs
/// after every optimizer step.
///
/// Semantics: after apply(), a restored channel holds exactly its snapshot;
/// a channel pruned by a "hard" policy outputs exactly zero and stays so
/// across after_update(); apply() with no changes is idempotent. Optional:
/// mask_gradients_of(net, groups), called from observe() before the optimizer
/// step; finish(net, groups, snapshots), called from finalize().
template <class R, class Net>
concept reconstructor_for =
    std::copy_constructible<R> && requires(R& r, const Net& net, const step_context& ctx, std::span<const group_update> updates,
                                           std::span<const group_state> groups, snapshot_store<Net>& snapshots) {
        r.apply(net, ctx, updates, snapshots);
        r.after_update(net, groups, snapshots);
    };

/// The smallest reconstruction policy: masks are bookkeeping only.
struct reconstructor_archetype {
    template <class Net>
    void apply(const Net&, const step_context&, std::span<const group_update>, snapshot_store<Net>&) {}
    template <class Net>
    void after_update(const Net&, std::span<const group_state>, snapshot_store<Net>&) {}
};

namespace detail {
/// Pruned channel indices of a mask, into r (its memory reused).
inline void pruned_list(const group_state& s, std::vector<index>& r) {
    r.clear();
    append_nonzero(s.pruned.data(), s.pruned.size(), r);
}
inline std::vector<index> pruned_list(const group_state& s) {
    std::vector<index> r;
    pruned_list(s, r);
    return r;
}

/// Zeroes (or scales) the listed channels' filters and biases in every member.
template <class Net>
void scale_filters(const Net& net, index g, std::span<const index> ch, typename Net::value_type factor) {
    using B = backend_t<typename Net::memory_type>;
    const auto& grp = net.groups()[static_cast<std::size_t>(g)];
    for (std::size_t m = 0; m < grp.members.size(); ++m) {
        const auto mv = member_of(net, g, m);
        if (factor == 0) {
            B::zero_rows(mv.weight, ch);
            if (!mv.bias.empty()) B::set_entries(mv.bias, ch, typename Net::value_type(0));
        } else {
            B::scale_rows(mv.weight, ch, factor);
            if (!mv.bias.empty()) B::scale_entries(mv.bias, ch, factor);
        }
    }
}

/// Sets (or scales) the listed channels' BN gamma and beta in every member.
template <class Net>
void scale_bn(const Net& net, index g, std::span<const index> ch, typename Net::value_type factor) {
    using B = backend_t<typename Net::memory_type>;
    const auto& grp = net.groups()[static_cast<std::size_t>(g)];
    for (std::size_t m = 0; m < grp.members.size(); ++m) {
        const auto mv = member_of(net, g, m);
        if (!mv.bn) continue;
        if (factor == 0) {
            B::set_entries(mv.bn->gamma, ch, typename Net::value_type(0));
            B::set_entries(mv.bn->beta, ch, typename Net::value_type(0));
        } else {
            B::scale_entries(mv.bn->gamma, ch, factor);
            B::scale_entries(mv.bn->beta, ch, factor);
        }
    }
}

/// Zeroes the gradients the optimizer would apply to the listed channels.
template <class Net>
void zero_gradients(const Net& net, index g, std::span<const index> ch, bool with_bn) {
    using B = backend_t<typename Net::memory_type>;
    using T = typename Net::value_type;
    const auto& grp = net.groups()[static_cast<std::size_t>(g)];
    for (std::size_t m = 0; m < grp.members.size(); ++m) {
        const auto mv = member_of(net, g, m);
        if (!mv.grad.empty()) B::zero_rows(mv.grad, ch);
        if (!mv.grad_bias.empty()) B::set_entries(mv.grad_bias, ch, T(0));
        if (with_bn && mv.bn) {
            if (!mv.bn->grad_gamma.empty()) B::set_entries(mv.bn->grad_gamma, ch, T(0));
            if (!mv.bn->grad_beta.empty()) B::set_entries(mv.bn->grad_beta, ch, T(0));
        }
    }
}
/// The listed channels of every group in one buffer (lists[g] for group g).
struct channel_lists {
    std::vector<index> data;
    std::vector<std::span<const index>> lists;

    channel_lists() = default;
    /// The pruned channels of every group's mask.
    explicit channel_lists(std::span<const group_state> groups) {
        std::size_t n = 0;
        for (const auto& s : groups) n += s.pruned.size();
        data.reserve(n);
        std::vector<std::size_t> ends;
        ends.reserve(groups.size());
        for (const auto& s : groups) {
            detail::append_nonzero(s.pruned.data(), s.pruned.size(), data);
            ends.push_back(data.size());
        }
        lists.reserve(groups.size());
        std::size_t b = 0;
        for (auto e : ends) {
            lists.emplace_back(data.data() + b, e - b);
            b = e;
        }
    }
    channel_lists(channel_lists&&) noexcept = default;  // the spans keep pointing into the moved buffer
    channel_lists& operator=(channel_lists&&) noexcept = default;
    channel_lists(const channel_lists&) = delete;
    channel_lists& operator=(const channel_lists&) = delete;
};

/// f(member views, ch[g]) for every member of every group g with channels
/// listed in ch[g] and include(g).
template <class Net, class Include, class F>
void for_each_listed_member(const Net& net, std::span<const std::span<const index>> ch, Include include, F f) {
    for (std::size_t g = 0; g < ch.size(); ++g) {
        if (ch[g].empty() || !include(g)) continue;
        for (std::size_t m = 0; m < net.groups()[g].members.size(); ++m) f(member_of(net, static_cast<index>(g), m), ch[g]);
    }
}

/// scale_filters(net, g, ch[g], 0) for every group g with include(g): the
/// rows of all members zeroed in one batched call, the biases entry by entry.
template <class Net, class Include>
void zero_filters_all(const Net& net, std::span<const std::span<const index>> ch, Include include) {
    using B = backend_t<typename Net::memory_type>;
    using T = typename Net::value_type;
    using W = matrix_view<T, typename Net::memory_type>;
    std::vector<W> ws;
    std::vector<std::span<const index>> rows;
    for_each_listed_member(net, ch, include, [&](const auto& mv, std::span<const index> c) {
        ws.push_back(mv.weight);
        rows.push_back(c);
        if (!mv.bias.empty()) B::set_entries(mv.bias, c, T(0));
    });
    if (!ws.empty()) B::zero_rows_batch(std::span<const W>(ws), std::span<const std::span<const index>>(rows));
}

/// scale_bn(net, g, ch[g], 0) for every group g with include(g).
template <class Net, class Include>
void zero_bn_all(const Net& net, std::span<const std::span<const index>> ch, Include include) {
    for (std::size_t g = 0; g < ch.size(); ++g)
        if (!ch[g].empty() && include(g)) scale_bn(net, static_cast<index>(g), ch[g], typename Net::value_type(0));
}

/// zero_gradients(net, g, ch[g], with_bn) for every group: the gradient rows
/// of all members zeroed in one batched call.
template <class Net>
void zero_gradients_all(const Net& net, std::span<const std::span<const index>> ch, bool with_bn) {
    using B = backend_t<typename Net::memory_type>;
    using T = typename Net::value_type;
    using W = matrix_view<T, typename Net::memory_type>;
    std::vector<W> ws;
    std::vector<std::span<const index>> rows;
    for_each_listed_member(net, ch, [](std::size_t) { return true; }, [&](const auto& mv, std::span<const index> c) {
        if (!mv.grad.empty()) {
            ws.push_back(mv.grad);
            rows.push_back(c);
        }
        if (!mv.grad_bias.empty()) B::set_entries(mv.grad_bias, c, T(0));
        if (with_bn && mv.bn) {
            if (!mv.bn->grad_gamma.empty()) B::set_entries(mv.bn->grad_gamma, c, T(0));
            if (!mv.bn->grad_beta.empty()) B::set_entries(mv.bn->grad_beta, c, T(0));
        }
    });
    if (!ws.empty()) B::zero_rows_batch(std::span<const W>(ws), std::span<const std::span<const index>>(rows));
}
}  // namespace detail

}  // namespace psap
