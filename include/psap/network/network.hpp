#pragma once
/// \file network.hpp
/// psap::network: the description of a user's model that the pruner works on
/// (layers as views into the user's storage, plus groups of coupled channels).
/// Built with a small builder; the user's model never derives from anything.

#include <psap/error.hpp>
#include <psap/network/group.hpp>
#include <psap/network/layer.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace psap {

template <class T, memory_space Memory = host_memory>
class network {
public:
    using value_type = T;
    using memory_type = Memory;
    using layer_type = layer<T, Memory>;

    /// Fluent handle returned by add_group().
    class group_ref {
    public:
        group_ref& member(index layer_id, index offset = 0) {
            net_->add_member(id_, layer_id, offset);
            return *this;
        }
        group_ref& consumer(index layer_id, index offset = 0) {
            net_->add_consumer(id_, layer_id, offset);
            return *this;
        }
        index id() const noexcept { return id_; }
        operator index() const noexcept { return id_; }

    private:
        friend class network;
        group_ref(network* n, index id) : net_(n), id_(id) {}
        network* net_;
        index id_;
    };

    /// Adds a layer; its views are checked against its declared geometry.
    index add_layer(layer_type l) {
        check_layer(l);
        for (const auto& other : layers_)
            if (other.name == l.name) detail::fail("psap::network: two layers are named '", l.name, "'; layer names must be unique");
        layers_.push_back(std::move(l));
        return static_cast<index>(layers_.size() - 1);
    }

    /// Adds an empty group of `size` coupled channels; add members and consumers next.
    group_ref add_group(std::string name, index size) {
        if (size <= 0)
            detail::fail("psap::network: group '", name, "' has ", size, " channels; a group needs at least one channel");
        for (const auto& g : groups_)
            if (g.name == name) detail::fail("psap::network: two groups are named '", name, "'; group names must be unique");
        groups_.push_back(group{std::move(name), size, {}, {}});
        return group_ref(this, static_cast<index>(groups_.size() - 1));
    }

    void add_member(index group_id, index layer_id, index offset = 0) {
        auto& g = group_at(group_id);
        const auto& l = layer_at(layer_id);
        if (!l.has_weight())
            detail::fail("psap::network: layer '", l.name, "' has no weight view, so it cannot be a member of group '", g.name,
                         "'; give it a weight view or add it as a consumer");
        if (offset < 0 || offset + g.size > l.out_channels)
            detail::fail("psap::network: group '", g.name, "' (", g.size, " channels at offset ", offset,
                         ") does not fit in the ", l.out_channels, " output channels of layer '", l.name, "'");
        g.members.push_back({layer_id, offset});
    }

    void add_consumer(index group_id, index layer_id, index offset = 0) {
        auto& g = group_at(group_id);
        const auto& l = layer_at(layer_id);
        if (offset < 0 || offset + g.size > l.in_channels)
            detail::fail("psap::network: group '", g.name, "' (", g.size, " channels at offset ", offset,
                         ") does not fit in the ", l.in_channels, " input channels of consumer layer '", l.name, "'");
        g.consumers.push_back({layer_id, offset});
    }

    const std::vector<layer_type>& layers() const noexcept { return layers_; }
    const std::vector<group>& groups() const noexcept { return groups_; }
    /// Mutable access, e.g. to re-point views after the user reallocated storage.
    layer_type& layer_at(index id) {
        if (id < 0 || id >= static_cast<index>(layers_.size()))
            detail::fail("psap::network: no layer with id ", id, " (the network has ", layers_.size(), " layers)");
        return layers_[static_cast<std::size_t>(id)];
    }
    const layer_type& layer_at(index id) const { return const_cast<network*>(this)->layer_at(id); }

    index find_layer(std::string_view name) const {
        for (std::size_t i = 0; i < layers_.size(); ++i)
            if (layers_[i].name == name) return static_cast<index>(i);
        detail::fail("psap::network: no layer named '", name, "'");
    }
    index find_group(std::string_view name) const {
        for (std::size_t i = 0; i < groups_.size(); ++i)
            if (groups_[i].name == name) return static_cast<index>(i);
        detail::fail("psap::network: no group named '", name, "'");
    }

    /// Whole-network checks: every group has a member, no channel is claimed
    /// twice, all members of a group agree on whether they carry batch norm.
    void validate() const {
        if (groups_.empty()) detail::fail("psap::network: no groups; add at least one group of prunable channels");
        // Again: layer_at() may have changed a layer since add_layer() checked it.
        for (const auto& l : layers_) check_layer(l);
        std::vector<std::vector<std::int8_t>> out_used(layers_.size()), in_used(layers_.size());
        for (std::size_t i = 0; i < layers_.size(); ++i) {
            out_used[i].assign(static_cast<std::size_t>(layers_[i].out_channels), 0);
            in_used[i].assign(static_cast<std::size_t>(layers_[i].in_channels), 0);
        }
        for (const auto& g : groups_) {
            if (g.members.empty())
                detail::fail("psap::network: group '", g.name, "' has no member layer; add the layer(s) whose output channels it is");
            const bool first_bn = layers_[static_cast<std::size_t>(g.members.front().layer)].bn.has_value();
            for (const auto& m : g.members) {
                const auto& l = layers_[static_cast<std::size_t>(m.layer)];
                if (l.bn.has_value() != first_bn)
                    detail::fail("psap::network: group '", g.name, "' mixes members with and without batch norm (layer '", l.name,
                                 "'); couple only channels that are gated the same way");
                claim(out_used[static_cast<std::size_t>(m.layer)], m.offset, g.size, g.name, l.name, "output");
            }
            for (const auto& c : g.consumers)
                claim(in_used[static_cast<std::size_t>(c.layer)], c.offset, g.size, g.name,
                      layers_[static_cast<std::size_t>(c.layer)].name, "input");
        }
    }

    /// A 64-bit hash of the structure (names, geometry, groups): state blobs
    /// carry it so a state from another network is rejected.
    std::uint64_t fingerprint() const {
        std::uint64_t h = 1469598103934665603ull;
        auto mix = [&h](const void* p, std::size_t n) {
            const auto* b = static_cast<const unsigned char*>(p);
            for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
        };
        auto mix_i = [&](index v) { mix(&v, sizeof v); };
        for (const auto& l : layers_) {
            mix(l.name.data(), l.name.size());
            mix_i(l.out_channels);
            mix_i(l.in_channels);
            mix_i(l.kernel_area);
            mix_i(l.out_positions);
            mix_i(l.bias.empty() ? 0 : 1);
            mix_i(l.bn.has_value() ? 1 : 0);
        }
        for (const auto& g : groups_) {
            mix(g.name.data(), g.name.size());
            mix_i(g.size);
            for (const auto& m : g.members) mix_i(m.layer), mix_i(m.offset);
            mix_i(-1);
            for (const auto& c : g.consumers) mix_i(c.layer), mix_i(c.offset);
            mix_i(-2);
        }
        return h;
    }

private:
    group& group_at(index id) {
        if (id < 0 || id >= static_cast<index>(groups_.size()))
            detail::fail("psap::network: no group with id ", id, " (the network has ", groups_.size(), " groups)");
        return groups_[static_cast<std::size_t>(id)];
    }

    static void claim(std::vector<std::int8_t>& used, index offset, index size, const std::string& g, const std::string& l,
                      const char* side) {
        // add_member/add_consumer checked the fit; a layer's channel count
        // changed through layer_at() since then is caught here.
        if (offset < 0 || offset + size > static_cast<index>(used.size()))
            detail::fail("psap::network: group '", g, "' (", size, " channels at offset ", offset, ") does not fit in the ",
                         used.size(), " ", side, " channels of layer '", l, "'");
        for (index c = offset; c < offset + size; ++c) {
            if (used[static_cast<std::size_t>(c)])
                detail::fail("psap::network: ", side, " channel ", c, " of layer '", l, "' is claimed twice (again by group '", g,
                             "'); a channel belongs to at most one group");
            used[static_cast<std::size_t>(c)] = 1;
        }
    }

    static void check_vec(const vector_view<T, Memory>& v, index n, const std::string& layer, const char* what, bool optional) {
        if (v.empty() && optional) return;
        if (v.size() != n)
            detail::fail("psap::network: layer '", layer, "': ", what, " has ", v.size(), " entries, expected ", n,
                         " (one per output channel)");
        if (n > 1 && v.stride() == 0)
            detail::fail("psap::network: layer '", layer, "': ", what, " has stride 0, so its ", n,
                         " channels share one value and a write to one (a pruned channel's) changes all; give each channel its own entry");
    }

    // Rows that share memory would be written through each other: zeroing one
    // filter would zero part of another. Elements (i, j) and (i + di, j + dj)
    // meet when di * row_stride + dj * col_stride == 0 with 0 < di < rows and
    // |dj| < cols; one pass over di finds any such pair.
    static void check_rows_disjoint(const matrix_view<T, Memory>& v, const std::string& layer, const char* what) {
        const index r = v.rows(), c = v.cols(), rs = v.row_stride(), cs = v.col_stride();
        if (r <= 0 || c <= 0) return;
        bool shared = (c > 1 && cs == 0) || (r > 1 && rs == 0);
        for (index di = 1; !shared && cs != 0 && di < r; ++di) {
            const index t = di * rs;
            if (t % cs == 0) shared = (t / cs < c) && (t / cs > -c);
        }
        if (shared)
            detail::fail("psap::network: layer '", layer, "': the ", what, " view (", r, " x ", c, ", row stride ", rs, ", column stride ", cs,
                         ") has elements that share memory, so pruning one filter would write into another; each of the ", r,
                         " filters needs its own ", c, " elements (e.g. row stride >= ", c, " with column stride 1)");
    }

    static void check_layer(const layer_type& l) {
        if (l.name.empty()) detail::fail("psap::network: a layer needs a non-empty name");
        if (l.out_channels <= 0 || l.in_channels <= 0)
            detail::fail("psap::network: layer '", l.name, "' has ", l.out_channels, " output and ", l.in_channels,
                         " input channels; both must be positive");
        if (l.kernel_area <= 0 || l.out_positions <= 0)
            detail::fail("psap::network: layer '", l.name, "' has kernel_area ", l.kernel_area, " and out_positions ",
                         l.out_positions, "; both must be positive (1 for a linear layer)");
        const index k = l.in_channels * l.kernel_area;
        if (l.has_weight() && (l.weight.rows() != l.out_channels || l.weight.cols() != k))
            detail::fail("psap::network: layer '", l.name, "': weight view is ", l.weight.rows(), " x ", l.weight.cols(),
                         ", expected ", l.out_channels, " x ", k, " (out_channels x in_channels*kernel_area)");
        if (!l.grad.empty() && (l.grad.rows() != l.weight.rows() || l.grad.cols() != l.weight.cols()))
            detail::fail("psap::network: layer '", l.name, "': gradient view is ", l.grad.rows(), " x ", l.grad.cols(),
                         ", but the weight view is ", l.weight.rows(), " x ", l.weight.cols());
        check_rows_disjoint(l.weight, l.name, "weight");
        check_rows_disjoint(l.grad, l.name, "gradient");
        check_vec(l.bias, l.out_channels, l.name, "bias", true);
        check_vec(l.grad_bias, l.out_channels, l.name, "bias gradient", true);
        if (l.bn) {
            const auto& b = *l.bn;
            check_vec(b.gamma, l.out_channels, l.name, "BN gamma", false);
            check_vec(b.beta, l.out_channels, l.name, "BN beta", false);
            check_vec(b.running_mean, l.out_channels, l.name, "BN running mean", true);
            check_vec(b.running_var, l.out_channels, l.name, "BN running variance", true);
            check_vec(b.grad_gamma, l.out_channels, l.name, "BN gamma gradient", true);
            check_vec(b.grad_beta, l.out_channels, l.name, "BN beta gradient", true);
            check_vec(b.gate_grad, l.out_channels, l.name, "BN gate gradient", true);
            if (!(b.eps > 0)) detail::fail("psap::network: layer '", l.name, "': BN eps is ", b.eps, "; it must be positive");
        }
    }

    std::vector<layer_type> layers_;
    std::vector<group> groups_;
};

template <class N>
inline constexpr bool is_network_v = false;
template <class T, memory_space M>
inline constexpr bool is_network_v<network<T, M>> = true;

/// What pruners, presets and registries take as `Net`: a psap::network<T,
/// Memory> (not its value type: `make_pruner<psap::network<double>>`, not
/// `make_pruner<double>`).
template <class N>
concept network_description = is_network_v<N>;

/// The slices of one group member that belong to the group: its rows of the
/// weight and gradient, and its entries of bias and batch norm.
template <class T, memory_space M>
struct member_views {
    const layer<T, M>* source = nullptr;
    matrix_view<T, M> weight, grad;
    vector_view<T, M> bias, grad_bias;
    std::optional<batch_norm_views<T, M>> bn;
};

/// Member `m` of group `g`, sliced to the group's channels.
template <class T, memory_space M>
member_views<T, M> member_of(const network<T, M>& net, index g, std::size_t m) {
    const auto& grp = net.groups()[static_cast<std::size_t>(g)];
    const auto& span = grp.members[m];
    const auto& l = net.layers()[static_cast<std::size_t>(span.layer)];
    const index o = span.offset, n = grp.size;
    // Views re-pointed through layer_at() after the layer was added are not
    // checked there: a slice past the end of one would be read out of bounds.
    const auto fits = [&](index have, const char* what) {
        if (o + n > have)
            detail::fail("psap::network: layer '", l.name, "': its ", what, " has ", have, " rows or entries, but group '", grp.name,
                         "' takes channels ", o, " to ", o + n - 1, "; a view re-pointed through layer_at() must keep the layer's shape");
    };
    fits(l.weight.rows(), "weight view");
    member_views<T, M> r;
    r.source = &l;
    r.weight = l.weight.middle_rows(o, n);
    if (!l.grad.empty()) {
        fits(l.grad.rows(), "gradient view");
        if (l.grad.cols() != l.weight.cols())
            detail::fail("psap::network: layer '", l.name, "': gradient view is ", l.grad.rows(), " x ", l.grad.cols(),
                         ", but the weight view is ", l.weight.rows(), " x ", l.weight.cols());
        r.grad = l.grad.middle_rows(o, n);
    }
    if (!l.bias.empty()) fits(l.bias.size(), "bias"), r.bias = l.bias.segment(o, n);
    if (!l.grad_bias.empty()) fits(l.grad_bias.size(), "bias gradient"), r.grad_bias = l.grad_bias.segment(o, n);
    if (l.bn) {
        auto seg = [&](const vector_view<T, M>& v) {
            if (v.empty()) return v;
            fits(v.size(), "batch-norm vector");
            return v.segment(o, n);
        };
        const auto& b = *l.bn;
        r.bn = batch_norm_views<T, M>{seg(b.gamma),      seg(b.beta),      seg(b.running_mean), seg(b.running_var),
                                      seg(b.grad_gamma), seg(b.grad_beta), seg(b.gate_grad),    b.eps};
    }
    return r;
}

}  // namespace psap
