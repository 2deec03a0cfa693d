#pragma once
/// \file fpgm.hpp
/// FPGM (He et al., CVPR 2019): score_i = sum_j ||F_i - F_j||_2, the distance
/// of filter i to all others; filters near the geometric median are the most
/// replaceable and go first. For a group the filters are the concatenation of
/// the members' filters (squared distances add across members).

#include <psap/backend/cpu.hpp>
#include <psap/policy/context.hpp>

#include <cmath>
#include <span>
#include <vector>

namespace psap {

struct fpgm {
    static constexpr const char* name = "fpgm";

    template <class V>
    void fields(V&&) {}

    template <class Net>
    void score(const Net& net, const step_context&, std::span<std::vector<double>> scores) const {
        using B = backend_t<typename Net::memory_type>;
        for (std::size_t g = 0; g < scores.size(); ++g) {
            const auto& grp = net.groups()[g];
            const std::size_t n = static_cast<std::size_t>(grp.size);
            std::vector<double> d2(n * n, 0.0), tmp(n * n);
            for (std::size_t m = 0; m < grp.members.size(); ++m) {
                B::pairwise_sq_distances(member_of(net, static_cast<index>(g), m).weight, tmp);
                for (std::size_t k = 0; k < d2.size(); ++k) d2[k] += tmp[k];
            }
            auto& out = scores[g];
            for (std::size_t i = 0; i < n; ++i) {
                double s = 0;
                for (std::size_t j = 0; j < n; ++j) s += std::sqrt(d2[i * n + j]);
                out[i] = s;
            }
        }
    }
};

}  // namespace psap
