#pragma once
/// \file measure.hpp
/// Per-channel measurements of a group that several policies share, computed
/// through the backend of the network's memory space.

#include <psap/backend/cpu.hpp>
#include <psap/network/network.hpp>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

namespace psap::measure {

/// Median of the values whose mask entry is 0 (active); NaN when none.
inline double active_median(std::span<const double> v, std::span<const std::uint8_t> pruned) {
    std::vector<double> a;
    a.reserve(v.size());
    for (std::size_t i = 0; i < v.size(); ++i)
        if (pruned.empty() || !pruned[i]) a.push_back(v[i]);
    if (a.empty()) return std::nan("");
    const std::size_t h = a.size() / 2;
    std::nth_element(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(h), a.end());
    if (a.size() % 2) return a[h];
    const double upper = a[h];
    const double lower = *std::max_element(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(h));
    return 0.5 * (lower + upper);
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

}  // namespace psap::measure
