#pragma once
/// \file snapshot_store.hpp
/// Saved copies of pruned channels (member filters, biases, BN gamma/beta),
/// owned by the pruner in the network's memory space, so a restore puts back
/// exactly what was pruned.

#include <psap/backend/cpu.hpp>
#include <psap/network/network.hpp>

#include <cstdint>
#include <span>
#include <vector>

namespace psap {

template <class Net>
class snapshot_store {
public:
    using T = typename Net::value_type;
    using M = typename Net::memory_type;
    using backend = backend_t<M>;
    template <class U>
    using buffer = typename backend::template buffer<U>;

    /// What a snapshot operation touches.
    enum parts : unsigned { filters = 1, batch_norm = 2, everything = 3 };

    /// Allocates dense per-member storage once: snapshots never reallocate later.
    void bind(const Net& net) {
        groups_.assign(net.groups().size(), {});
        for (std::size_t g = 0; g < net.groups().size(); ++g) {
            const auto& grp = net.groups()[g];
            auto& sg = groups_[g];
            sg.saved.assign(static_cast<std::size_t>(grp.size), 0);
            sg.members.resize(grp.members.size());
            for (std::size_t m = 0; m < grp.members.size(); ++m) {
                const auto mv = member_of(net, static_cast<index>(g), m);
                auto& sm = sg.members[m];
                sm.rows = grp.size;
                sm.cols = mv.weight.cols();
                sm.filters = buffer<T>(static_cast<std::size_t>(sm.rows * sm.cols));
                if (!mv.bias.empty()) sm.bias = buffer<T>(static_cast<std::size_t>(sm.rows));
                if (mv.bn) {
                    sm.gamma = buffer<T>(static_cast<std::size_t>(sm.rows));
                    sm.beta = buffer<T>(static_cast<std::size_t>(sm.rows));
                }
            }
        }
    }

    bool has(index g, index c) const { return groups_[static_cast<std::size_t>(g)].saved[static_cast<std::size_t>(c)] != 0; }

    /// Copies the channels' current values into the store (overwriting older snapshots).
    void save(const Net& net, index g, std::span<const index> channels) {
        auto& sg = groups_[static_cast<std::size_t>(g)];
        for (std::size_t m = 0; m < sg.members.size(); ++m) {
            const auto mv = member_of(net, g, m);
            auto& sm = sg.members[m];
            backend::copy_rows(mv.weight, filters_of(sm), channels);
            if (!mv.bias.empty()) backend::copy_entries(mv.bias, vec(sm.bias), channels);
            if (mv.bn) {
                backend::copy_entries(mv.bn->gamma, vec(sm.gamma), channels);
                backend::copy_entries(mv.bn->beta, vec(sm.beta), channels);
            }
        }
        for (index c : channels) sg.saved[static_cast<std::size_t>(c)] = 1;
    }

    /// Writes saved values back into the network.
    void restore(const Net& net, index g, std::span<const index> channels, unsigned what = everything) {
        auto& sg = groups_[static_cast<std::size_t>(g)];
        for (index c : channels)
            if (!sg.saved[static_cast<std::size_t>(c)])
                detail::fail("psap::snapshot_store: channel ", c, " of group '", net.groups()[static_cast<std::size_t>(g)].name,
                             "' has no snapshot (it was never pruned in this run)");
        for (std::size_t m = 0; m < sg.members.size(); ++m) {
            const auto mv = member_of(net, g, m);
            auto& sm = sg.members[m];
            if (what & filters) {
                backend::copy_rows(filters_of(sm), mv.weight, channels);
                if (!mv.bias.empty()) backend::copy_entries(vec(sm.bias), mv.bias, channels);
            }
            if ((what & batch_norm) && mv.bn) {
                backend::copy_entries(vec(sm.gamma), mv.bn->gamma, channels);
                backend::copy_entries(vec(sm.beta), mv.bn->beta, channels);
            }
        }
    }

    /// restore(net, g, channels[g], what) for every group g, with the filter
    /// rows of all members copied in one batched backend call.
    void restore_all(const Net& net, std::span<const std::span<const index>> channels, unsigned what = everything) {
        for (std::size_t g = 0; g < channels.size(); ++g)
            for (index c : channels[g])
                if (!groups_[g].saved[static_cast<std::size_t>(c)])
                    detail::fail("psap::snapshot_store: channel ", c, " of group '", net.groups()[g].name,
                                 "' has no snapshot (it was never pruned in this run)");
        using W = matrix_view<T, M>;
        using CW = matrix_view<const T, M>;
        std::vector<CW> src;
        std::vector<W> dst;
        std::vector<std::span<const index>> rows;
        for (std::size_t g = 0; g < channels.size(); ++g) {
            if (channels[g].empty()) continue;
            auto& sg = groups_[g];
            for (std::size_t m = 0; m < sg.members.size(); ++m) {
                const auto mv = member_of(net, static_cast<index>(g), m);
                auto& sm = sg.members[m];
                if (what & filters) {
                    src.push_back(filters_of(sm));
                    dst.push_back(mv.weight);
                    rows.push_back(channels[g]);
                    if (!mv.bias.empty()) backend::copy_entries(vec(sm.bias), mv.bias, channels[g]);
                }
                if ((what & batch_norm) && mv.bn) {
                    backend::copy_entries(vec(sm.gamma), mv.bn->gamma, channels[g]);
                    backend::copy_entries(vec(sm.beta), mv.bn->beta, channels[g]);
                }
            }
        }
        if (!src.empty())
            backend::copy_rows_batch(std::span<const CW>(src), std::span<const W>(dst), std::span<const std::span<const index>>(rows));
    }

    /// Saved filter rows of member m of group g (rows without a snapshot are unspecified).
    matrix_view<T, M> member_filters(index g, std::size_t m) {
        return filters_of(groups_[static_cast<std::size_t>(g)].members[m]);
    }

    /// Visits every buffer in a fixed order (for state()/load_state()).
    template <class F>
    void visit_buffers(F&& f) {
        for (auto& sg : groups_) {
            f(sg.saved);
            for (auto& sm : sg.members) {
                f(sm.filters);
                f(sm.bias);
                f(sm.gamma);
                f(sm.beta);
            }
        }
    }

private:
    struct member_store {
        index rows = 0, cols = 0;
        buffer<T> filters, bias, gamma, beta;
    };
    struct group_store {
        std::vector<std::uint8_t> saved;
        std::vector<member_store> members;
    };

    static matrix_view<T, M> filters_of(member_store& sm) { return {sm.filters.data(), sm.rows, sm.cols}; }
    static vector_view<T, M> vec(buffer<T>& b) { return {b.data(), static_cast<index>(b.size())}; }

    std::vector<group_store> groups_;
};

}  // namespace psap
