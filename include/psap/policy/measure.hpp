#pragma once
/// \file measure.hpp
/// Per-channel measurements of a group that several policies share, computed
/// through the backend of the network's memory space. The `*_all` forms
/// measure every group with one batched backend call per quantity (one
/// parallel region on the CPU, one launch and one copy on a GPU); they give
/// the same values, bit for bit, as the per-group forms.

#include <psap/backend/cpu.hpp>
#include <psap/network/network.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace psap::measure {

/// Median of the values whose mask entry is 0 (active); NaN when none.
/// `a` is working memory (its contents are replaced), so that a caller
/// measuring every group at every step allocates once.
inline double active_median(std::span<const double> v, std::span<const std::uint8_t> pruned, std::vector<double>& a) {
    // Branch-free compaction (see detail::append_where): masks are random.
    a.resize(v.size());
    std::size_t k = 0;
    if (pruned.empty()) {
        std::copy(v.begin(), v.end(), a.begin());
        k = v.size();
    } else {
        for (std::size_t i = 0; i < v.size(); ++i) {
            a[k] = v[i];
            k += static_cast<std::size_t>(pruned[i] == 0);
        }
    }
    a.resize(k);
    if (a.empty()) return std::nan("");
    const std::size_t h = a.size() / 2;
    std::nth_element(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(h), a.end());
    if (a.size() % 2) return a[h];
    const double upper = a[h];
    const double lower = *std::max_element(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(h));
    return 0.5 * (lower + upper);
}
inline double active_median(std::span<const double> v, std::span<const std::uint8_t> pruned) {
    std::vector<double> a;
    a.reserve(v.size());
    return active_median(v, pruned, a);
}

/// Sum over members of each channel's filter p-norm (p = 1 or 2).
template <class Net>
std::vector<double> filter_norms(const Net& net, index g, int p) {
    using B = backend_t<typename Net::memory_type>;
    const auto& grp = net.groups()[static_cast<std::size_t>(g)];
    std::vector<double> out(static_cast<std::size_t>(grp.size), 0.0), tmp(out.size());
    for (std::size_t m = 0; m < grp.members.size(); ++m) {
        const auto mv = member_of(net, g, m);
        if (p == 1) {
            B::row_abs_sums(mv.weight, tmp);
            for (std::size_t i = 0; i < out.size(); ++i) out[i] += tmp[i];
        } else {
            B::row_sq_norms(mv.weight, tmp);
            for (std::size_t i = 0; i < out.size(); ++i) out[i] += std::sqrt(tmp[i]);
        }
    }
    return out;
}

/// Sum over members of |gamma_i|; requires every member to carry batch norm.
template <class Net>
std::vector<double> abs_gamma(const Net& net, index g) {
    using B = backend_t<typename Net::memory_type>;
    const auto& grp = net.groups()[static_cast<std::size_t>(g)];
    std::vector<double> out(static_cast<std::size_t>(grp.size), 0.0), tmp(out.size());
    for (std::size_t m = 0; m < grp.members.size(); ++m) {
        const auto mv = member_of(net, g, m);
        if (!mv.bn) detail::fail("psap: group '", grp.name, "' member '", mv.source->name, "' has no batch norm, but a BN measure was asked for");
        B::read(mv.bn->gamma, tmp);
        for (std::size_t i = 0; i < out.size(); ++i) out[i] += std::abs(tmp[i]);
    }
    return out;
}

/// True when the group's members carry batch norm (validated to be all or none).
template <class Net>
bool has_bn(const Net& net, index g) {
    const auto& grp = net.groups()[static_cast<std::size_t>(g)];
    return net.layers()[static_cast<std::size_t>(grp.members.front().layer)].bn.has_value();
}

/// A channel's magnitude: sum of |gamma| with batch norm, else of filter L2 norms.
template <class Net>
std::vector<double> channel_magnitude(const Net& net, index g) {
    return has_bn(net, g) ? abs_gamma(net, g) : filter_norms(net, g, 2);
}

// ------------------------------------------------------------------ whole network

/// Every group's members, sliced to the group's channels, in (group, member)
/// order: the gather step of the batched measurements.
template <class Net>
struct members {
    using T = typename Net::value_type;
    using M = typename Net::memory_type;
    std::vector<member_views<T, M>> views;  ///< group 0's members, then group 1's, ...
    std::vector<std::size_t> first;         ///< group g's members are views[first[g] .. first[g + 1])

    members() = default;
    explicit members(const Net& net) { assign(net); }
    /// Gathers `net`'s members again, reusing this object's memory.
    void assign(const Net& net) {
        const auto& gs = net.groups();
        views.clear(), first.clear();
        first.reserve(gs.size() + 1);
        for (std::size_t g = 0; g < gs.size(); ++g) {
            first.push_back(views.size());
            for (std::size_t m = 0; m < gs[g].members.size(); ++m) views.push_back(member_of(net, static_cast<index>(g), m));
        }
        first.push_back(views.size());
    }
    std::size_t groups() const noexcept { return first.size() - 1; }
    std::size_t count() const noexcept { return views.size(); }
    /// The member weights, in order.
    std::vector<matrix_view<T, M>> weights() const {
        std::vector<matrix_view<T, M>> w;
        w.reserve(views.size());
        for (const auto& v : views) w.push_back(v.weight);
        return w;
    }
};

/// One buffer of doubles cut into consecutive spans (one per member or per
/// group): the outputs of a batched backend call, in one allocation.
struct slices {
    std::vector<double> data;
    std::vector<std::span<double>> spans;

    slices() = default;
    explicit slices(std::span<const std::size_t> sizes) { resize(sizes); }
    slices(slices&&) noexcept = default;  // the spans keep pointing into the moved buffer
    slices& operator=(slices&&) noexcept = default;
    slices(const slices&) = delete;
    slices& operator=(const slices&) = delete;
    void resize(std::span<const std::size_t> sizes) {
        std::size_t n = 0;
        for (auto s : sizes) n += s;
        data.assign(n, 0.0);
        spans.clear();
        spans.reserve(sizes.size());
        std::size_t o = 0;
        for (auto s : sizes) {
            spans.emplace_back(data.data() + o, s);
            o += s;
        }
    }
    std::span<const std::span<double>> all() const noexcept { return spans; }
    std::span<double> operator[](std::size_t k) const noexcept { return spans[k]; }
};

/// The lists a batched measurement gathers (output sizes, source views,
/// destination spans); a caller that measures at every step keeps one.
template <class Net>
struct gather_buffers {
    std::vector<std::size_t> sizes;
    std::vector<matrix_view<typename Net::value_type, typename Net::memory_type>> weights;
    std::vector<matrix_view<typename Net::value_type, typename Net::memory_type>> paired;  ///< second operands (row dots)
    std::vector<vector_view<typename Net::value_type, typename Net::memory_type>> vectors;
    std::vector<std::span<double>> dst;
};

/// Channels of the group of every member (the output sizes of a per-member batch).
template <class Net>
void member_sizes(const Net& net, const members<Net>& mem, std::vector<std::size_t>& s) {
    s.clear();
    s.reserve(mem.count());
    for (std::size_t g = 0; g < mem.groups(); ++g)
        for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k) s.push_back(static_cast<std::size_t>(net.groups()[g].size));
}
template <class Net>
std::vector<std::size_t> member_sizes(const Net& net, const members<Net>& mem) {
    std::vector<std::size_t> s;
    member_sizes(net, mem, s);
    return s;
}

/// Per member, the 1-norm (p = 1) or squared 2-norm (p = 2) of each filter,
/// in one batched call, into `out` (its memory reused); members for which
/// include(k) is false are skipped (empty span).
template <class Net, class Include>
void member_row_norms(const Net& net, const members<Net>& mem, int p, Include include, slices& out, gather_buffers<Net>& buf) {
    using B = backend_t<typename Net::memory_type>;
    using W = matrix_view<typename Net::value_type, typename Net::memory_type>;
    auto& sizes = buf.sizes;
    auto& w = buf.weights;
    auto& dst = buf.dst;
    member_sizes(net, mem, sizes);
    w.clear();
    for (std::size_t k = 0; k < mem.count(); ++k) {
        if (include(k))
            w.push_back(mem.views[k].weight);
        else
            sizes[k] = 0;
    }
    out.resize(sizes);
    dst.clear();
    for (std::size_t k = 0; k < mem.count(); ++k)
        if (include(k)) dst.push_back(out[k]);
    if (p == 1)
        B::row_abs_sums_batch(std::span<const W>(w), std::span<const std::span<double>>(dst));
    else
        B::row_sq_norms_batch(std::span<const W>(w), std::span<const std::span<double>>(dst));
}
template <class Net, class Include>
slices member_row_norms(const Net& net, const members<Net>& mem, int p, Include include) {
    slices out;
    gather_buffers<Net> buf;
    member_row_norms(net, mem, p, include, out, buf);
    return out;
}
/// Every member's row norms, in place.
template <class Net>
void member_row_norms(const Net& net, const members<Net>& mem, int p, slices& out, gather_buffers<Net>& buf) {
    member_row_norms(net, mem, p, [](std::size_t) { return true; }, out, buf);
}
template <class Net>
slices member_row_norms(const Net& net, const members<Net>& mem, int p) {
    return member_row_norms(net, mem, p, [](std::size_t) { return true; });
}

/// filter_norms for every group: out[g][i] = sum over members of ||F_mi||_p.
template <class Net>
std::vector<std::vector<double>> filter_norms_all(const Net& net, int p) {
    const members<Net> mem(net);
    const auto norms = member_row_norms(net, mem, p);
    std::vector<std::vector<double>> out(mem.groups());
    for (std::size_t g = 0; g < mem.groups(); ++g) {
        auto& o = out[g];
        o.assign(static_cast<std::size_t>(net.groups()[g].size), 0.0);
        for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k) {
            const auto t = norms[k];
            if (p == 1)
                for (std::size_t i = 0; i < o.size(); ++i) o[i] += t[i];
            else
                for (std::size_t i = 0; i < o.size(); ++i) o[i] += std::sqrt(t[i]);
        }
    }
    return out;
}

/// Reads one BN vector of every member that has batch norm (`pick` selects
/// it, e.g. &batch_norm_views<T, M>::gamma), in one batched call, into `out`
/// (its memory reused). Members without batch norm get an empty span.
template <class Net, class Pick>
void read_member_bn(const Net& net, const members<Net>& mem, Pick pick, slices& out, gather_buffers<Net>& buf) {
    using B = backend_t<typename Net::memory_type>;
    using V = vector_view<typename Net::value_type, typename Net::memory_type>;
    auto& sizes = buf.sizes;
    auto& vs = buf.vectors;
    auto& dst = buf.dst;
    member_sizes(net, mem, sizes);
    vs.clear();
    for (std::size_t k = 0; k < mem.count(); ++k) {
        const auto& bn = mem.views[k].bn;
        if (bn && !((*bn).*pick).empty())
            vs.push_back((*bn).*pick);
        else
            sizes[k] = 0;
    }
    out.resize(sizes);
    dst.clear();
    for (const auto& s : out.spans)
        if (!s.empty()) dst.push_back(s);
    B::read_batch(std::span<const V>(vs), std::span<const std::span<double>>(dst));
}
template <class Net, class Pick>
slices read_member_bn(const Net& net, const members<Net>& mem, Pick pick) {
    slices out;
    gather_buffers<Net> buf;
    read_member_bn(net, mem, pick, out, buf);
    return out;
}

/// abs_gamma for every group (every member must carry batch norm).
template <class Net>
std::vector<std::vector<double>> abs_gamma_all(const Net& net) {
    const members<Net> mem(net);
    for (std::size_t g = 0; g < mem.groups(); ++g)
        for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k)
            if (!mem.views[k].bn)
                detail::fail("psap: group '", net.groups()[g].name, "' member '", mem.views[k].source->name,
                             "' has no batch norm, but a BN measure was asked for");
    const auto gamma = read_member_bn(net, mem, &batch_norm_views<typename Net::value_type, typename Net::memory_type>::gamma);
    std::vector<std::vector<double>> out(mem.groups());
    for (std::size_t g = 0; g < mem.groups(); ++g) {
        auto& o = out[g];
        o.assign(static_cast<std::size_t>(net.groups()[g].size), 0.0);
        for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k)
            for (std::size_t i = 0; i < o.size(); ++i) o[i] += std::abs(gamma[k][i]);
    }
    return out;
}

/// Working memory of the batched measurements for one network type: the
/// members, the gathered lists and up to three outputs.
template <class Net>
struct workspace {
    members<Net> mem;
    gather_buffers<Net> buf;
    slices a, b, c;
};

/// channel_magnitude for every group: |gamma| sums for groups with batch
/// norm, filter L2 norm sums for the others.
/// `out` is resized to the groups, reusing its vectors' memory, and so is `w`.
template <class Net>
void channel_magnitude_all(const Net& net, std::vector<std::vector<double>>& out, workspace<Net>& w) {
    auto& mem = w.mem;
    mem.assign(net);
    bool any_bn = false, any_plain = false;
    for (std::size_t g = 0; g < mem.groups(); ++g) (has_bn(net, static_cast<index>(g)) ? any_bn : any_plain) = true;
    // Host gammas are read where they lie (the same doubles); device ones are copied first.
    constexpr bool host = std::is_same_v<typename Net::memory_type, host_memory>;
    auto &gamma = w.a, &norms = w.b;
    if (any_bn && !host) read_member_bn(net, mem, &batch_norm_views<typename Net::value_type, typename Net::memory_type>::gamma, gamma, w.buf);
    if (any_plain) member_row_norms(net, mem, 2, [&](std::size_t k) { return !mem.views[k].bn.has_value(); }, norms, w.buf);
    out.resize(mem.groups());
    for (std::size_t g = 0; g < mem.groups(); ++g) {
        auto& o = out[g];
        o.assign(static_cast<std::size_t>(net.groups()[g].size), 0.0);
        const bool bn = has_bn(net, static_cast<index>(g));
        for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k) {
            if (!bn) {
                for (std::size_t i = 0; i < o.size(); ++i) o[i] += std::sqrt(norms[k][i]);
            } else if constexpr (host) {
                const auto& v = mem.views[k].bn->gamma;
                for (std::size_t i = 0; i < o.size(); ++i) o[i] += std::abs(static_cast<double>(v[static_cast<index>(i)]));
            } else {
                for (std::size_t i = 0; i < o.size(); ++i) o[i] += std::abs(gamma[k][i]);
            }
        }
    }
}
template <class Net>
void channel_magnitude_all(const Net& net, std::vector<std::vector<double>>& out) {
    workspace<Net> w;
    channel_magnitude_all(net, out, w);
}
template <class Net>
std::vector<std::vector<double>> channel_magnitude_all(const Net& net) {
    std::vector<std::vector<double>> out;
    channel_magnitude_all(net, out);
    return out;
}

/// A workspace<Net> held by a policy, which is not a template of the network
/// type: created at first use for the network type asked for (again if it
/// changes). Copies start empty: it holds working memory, not state.
class workspace_slot {
public:
    workspace_slot() = default;
    workspace_slot(const workspace_slot&) noexcept {}
    workspace_slot& operator=(const workspace_slot&) noexcept { return *this; }
    workspace_slot(workspace_slot&& o) noexcept : held_(std::move(o.held_)), tag_(std::exchange(o.tag_, nullptr)) {}
    workspace_slot& operator=(workspace_slot&& o) noexcept {
        held_ = std::move(o.held_);
        tag_ = std::exchange(o.tag_, nullptr);
        return *this;
    }
    ~workspace_slot() = default;

    template <class Net>
    workspace<Net>& get() {
        if (tag_ != tag_of<Net>()) {
            held_ = std::make_unique<holder<Net>>();
            tag_ = tag_of<Net>();
        }
        return static_cast<holder<Net>&>(*held_).w;
    }

private:
    struct base {
        virtual ~base() = default;
    };
    template <class Net>
    struct holder final : base {
        workspace<Net> w;
    };
    template <class Net>
    static const void* tag_of() noexcept {
        static const char tag = 0;
        return &tag;
    }
    std::unique_ptr<base> held_;
    const void* tag_ = nullptr;
};

}  // namespace psap::measure
