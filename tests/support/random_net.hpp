#pragma once
// Random network specs for invariant tests: a chain of 3-6 nodes, each one conv
// or a pair of convs whose outputs are summed (a two-member group), with or
// without batch norm, some with bias, some split into two groups by channel
// offset; each node is consumed by the next node's convs, the last by an FC.
#include <support/model.hpp>

#include <string>
#include <vector>

namespace psap_test {

struct random_options {
    bool all_bn = false;     ///< every group carries batch norm
    bool no_bn = false;      ///< no group carries batch norm
    bool gate_grad = false;  ///< BN layers get a gate_grad view
    index min_width = 4, max_width = 24;
    index min_nodes = 3, max_nodes = 6;
    double pair_probability = 0.35;
    double split_probability = 0.3;
};

inline model_spec random_spec(std::uint64_t seed, const random_options& o = {}) {
    rng r(seed);
    model_spec s;
    const index nodes = r.between(o.min_nodes, o.max_nodes);
    index in = 3;
    std::vector<std::string> prev_layers;
    std::vector<std::size_t> prev_groups;
    for (index k = 0; k < nodes; ++k) {
        const index width = r.between(o.min_width, o.max_width);
        const bool pair = k > 0 && r.coin(o.pair_probability);
        const bool bn = o.all_bn ? true : o.no_bn ? false : r.coin(0.7);
        const bool bias = r.coin(bn ? 0.2 : 0.6);
        const index karea = r.coin() ? 9 : 1;
        const index positions = index{1} << (2 * r.between(0, 3));
        std::vector<std::string> names{str("n", k, "a")};
        if (pair) names.push_back(str("n", k, "b"));
        for (const auto& nm : names) {
            layer_spec l;
            l.name = nm;
            l.out = width;
            l.in = in;
            l.kernel_area = karea;
            l.positions = positions;
            l.bias = bias;
            l.bn = bn;
            l.gate_grad = bn && o.gate_grad;
            s.layers.push_back(l);
        }
        // the previous node's groups are consumed by every conv of this node
        for (std::size_t gi : prev_groups)
            for (const auto& nm : names) s.groups[gi].consumers.push_back({nm, s.groups[gi].members.front().offset});
        prev_groups.clear();
        std::vector<std::pair<index, index>> parts;  // (offset, size)
        if (width >= 8 && r.coin(o.split_probability)) {
            const index a = r.between(3, width - 3);
            parts = {{0, a}, {a, width - a}};
        } else {
            parts = {{0, width}};
        }
        for (std::size_t p = 0; p < parts.size(); ++p) {
            group_spec g;
            g.name = str("g", k, parts.size() > 1 ? (p == 0 ? "lo" : "hi") : "");
            g.size = parts[p].second;
            for (const auto& nm : names) g.members.push_back({nm, parts[p].first});
            prev_groups.push_back(s.groups.size());
            s.groups.push_back(g);
        }
        prev_layers = names;
        in = width;
    }
    layer_spec fc;
    fc.name = "fc";
    fc.out = 10;
    fc.in = in;
    fc.bias = true;
    s.layers.push_back(fc);
    for (std::size_t gi : prev_groups) s.groups[gi].consumers.push_back({"fc", s.groups[gi].members.front().offset});
    return s;
}

}  // namespace psap_test
