#pragma once
/// \file result.hpp
/// What finalize() returns: the keep-list of every group (for compaction) and
/// the per-layer widths and costs before and after, as JSON, CSV and a table.

#include <psap/network/budget.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace psap {

struct group_keep {
    std::string group;
    index size = 0;
    std::vector<index> kept;  ///< ascending channel indices that survive
};

struct pruning_result {
    std::vector<group_keep> groups;
    std::vector<cost_model::layer_width> layers;
    cost before, after;

    double reduction(budget_kind k) const {
        return before.of(k) == 0 ? 0.0 : 1.0 - static_cast<double>(after.of(k)) / static_cast<double>(before.of(k));
    }

    nlohmann::json to_json() const {
        nlohmann::json j;
        for (const auto& g : groups) j["groups"].push_back({{"group", g.group}, {"size", g.size}, {"kept", g.kept}});
        for (const auto& l : layers)
            j["layers"].push_back({{"layer", l.name},
                                   {"out_before", l.out_before},
                                   {"out_after", l.out_after},
                                   {"in_before", l.in_before},
                                   {"in_after", l.in_after},
                                   {"macs_before", l.macs_before},
                                   {"macs_after", l.macs_after},
                                   {"params_before", l.params_before},
                                   {"params_after", l.params_after}});
        j["macs"] = {{"before", before.macs}, {"after", after.macs}, {"reduction", reduction(budget_kind::flops)}};
        j["params"] = {{"before", before.params}, {"after", after.params}, {"reduction", reduction(budget_kind::params)}};
        j["filters"] = {{"before", before.filters}, {"after", after.filters}, {"reduction", reduction(budget_kind::filters)}};
        return j;
    }

    /// One row per layer: layer,out_before,out_after,pruned_ratio,in_before,in_after,macs_before,macs_after,params_before,params_after
    std::string to_csv() const {
        std::ostringstream os;
        os << "layer,out_before,out_after,pruned_ratio,in_before,in_after,macs_before,macs_after,params_before,params_after\n";
        // RFC 4180: a name with a comma, quote or line break is quoted, its quotes doubled.
        const auto field = [](const std::string& x) {
            if (x.find_first_of(",\"\r\n") == std::string::npos) return x;
            std::string q = "\"";
            for (char c : x) q += c == '"' ? std::string("\"\"") : std::string(1, c);
            return q + '"';
        };
        for (const auto& l : layers)
            os << field(l.name) << ',' << l.out_before << ',' << l.out_after << ','
               << (l.out_before ? 1.0 - double(l.out_after) / double(l.out_before) : 0.0) << ',' << l.in_before << ','
               << l.in_after << ',' << l.macs_before << ',' << l.macs_after << ',' << l.params_before << ',' << l.params_after
               << '\n';
        return os.str();
    }

    /// A fixed-width table for terminals.
    std::string table() const {
        std::ostringstream os;
        char buf[256];
        std::snprintf(buf, sizeof buf, "%-28s %9s %7s %13s %13s %11s %11s\n", "layer", "filters", "pruned", "MACs before",
                      "MACs after", "params bef", "params aft");
        os << buf;
        for (const auto& l : layers) {
            // The name apart: a long one would not fit the buffer, and would be cut with the row's end.
            os << l.name << std::string(l.name.size() < 28 ? 28 - l.name.size() : 0, ' ');
            std::snprintf(buf, sizeof buf, " %4lld/%-4lld %6.1f%% %13lld %13lld %11lld %11lld\n",
                          static_cast<long long>(l.out_after), static_cast<long long>(l.out_before),
                          l.out_before ? 100.0 * (1.0 - double(l.out_after) / double(l.out_before)) : 0.0,
                          static_cast<long long>(l.macs_before), static_cast<long long>(l.macs_after),
                          static_cast<long long>(l.params_before), static_cast<long long>(l.params_after));
            os << buf;
        }
        std::snprintf(buf, sizeof buf, "%-28s %9s %7s %13lld %13lld %11lld %11lld\n", "total", "", "",
                      static_cast<long long>(before.macs), static_cast<long long>(after.macs),
                      static_cast<long long>(before.params), static_cast<long long>(after.params));
        os << buf;
        std::snprintf(buf, sizeof buf, "MACs -%.2f%%  params -%.2f%%  filters -%.2f%%\n", 100 * reduction(budget_kind::flops),
                      100 * reduction(budget_kind::params), 100 * reduction(budget_kind::filters));
        os << buf;
        return os.str();
    }
};

}  // namespace psap
