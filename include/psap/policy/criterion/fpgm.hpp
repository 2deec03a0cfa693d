#pragma once
/// \file fpgm.hpp
/// FPGM (He et al., CVPR 2019): score_i = sum_j ||F_i - F_j||_2, the distance
/// of filter i to all others; filters near the geometric median are the most
/// replaceable and go first. For a group the filters are the concatenation of
/// the members' filters (squared distances add across members).

#include <psap/backend/cpu.hpp>
#include <psap/policy/context.hpp>
#include <psap/policy/measure.hpp>

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
        using W = matrix_view<typename Net::value_type, typename Net::memory_type>;
        // Every member's distance matrix in one batched call (one parallel
        // region over the rows of all members), then the sums per group.
        const measure::members<Net> mem(net);
        std::vector<std::size_t> sizes;
        for (std::size_t g = 0; g < mem.groups(); ++g)
            for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k)
                sizes.push_back(static_cast<std::size_t>(net.groups()[g].size * net.groups()[g].size));
        measure::slices d(sizes);
        const auto w = mem.weights();
        B::pairwise_sq_distances_batch(std::span<const W>(w), d.all());
        std::vector<double> d2;
        for (std::size_t g = 0; g < scores.size(); ++g) {
            const std::size_t n = static_cast<std::size_t>(net.groups()[g].size);
            d2.assign(n * n, 0.0);
            for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k) {
                const auto t = d[k];
                for (std::size_t e = 0; e < d2.size(); ++e) d2[e] += t[e];
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
