#pragma once
/// \file budget.hpp
/// Cost accounting (MACs, parameters, filters) under kept-channel counts, and
/// budget targets. One counter for every method: conv + linear MACs; params
/// are weights + biases + BN gamma/beta (running statistics are buffers).

#include <psap/error.hpp>
#include <psap/network/network.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace psap {

/// What a budget is measured in.
enum class budget_kind { flops, params, filters };

inline const char* to_string(budget_kind k) noexcept {
    switch (k) {
        case budget_kind::flops: return "flops";
        case budget_kind::params: return "params";
        case budget_kind::filters: return "filters";
    }
    return "?";
}
inline budget_kind parse_budget_kind(std::string_view s) {
    if (s == "flops" || s == "macs") return budget_kind::flops;
    if (s == "params") return budget_kind::params;
    if (s == "filters" || s == "channels") return budget_kind::filters;
    detail::fail("psap::budget: unknown budget kind '", s, "'; use flops, params or filters");
}

/// Remove at least `target` (a fraction in [0, 1)) of the network's cost of kind `kind`.
struct budget {
    budget_kind kind = budget_kind::flops;
    double target = 0.5;

    void validate() const {
        if (!(target >= 0.0 && target < 1.0))
            detail::fail("psap::budget: target ", target, " is outside [0, 1); it is the fraction of ", to_string(kind),
                         " to remove (0.5 halves the cost)");
    }
};

/// Integer costs: exact, so sums never depend on layer order.
struct cost {
    std::int64_t macs = 0;
    std::int64_t params = 0;
    std::int64_t filters = 0;

    std::int64_t of(budget_kind k) const noexcept {
        return k == budget_kind::flops ? macs : k == budget_kind::params ? params : filters;
    }
    friend bool operator==(const cost&, const cost&) = default;
};

namespace detail {
/// A fresh cost_model::id(): one counter for every network type (a static
/// inside the constructor template would count per instantiation).
inline std::uint64_t next_cost_model_id() noexcept {
    static std::atomic<std::uint64_t> built{0};
    return built.fetch_add(1, std::memory_order_relaxed) + 1;
}
}  // namespace detail

/// Prices a network for any kept-channel count per group.
class cost_model {
public:
    cost_model() = default;

    template <class T, memory_space M>
    explicit cost_model(const network<T, M>& net) {
        const auto& ls = net.layers();
        layers_.resize(ls.size());
        for (std::size_t i = 0; i < ls.size(); ++i) {
            const auto& l = ls[i];
            auto& c = layers_[i];
            c.name = l.name;
            c.out = l.out_channels;
            c.in = l.in_channels;
            c.pair_macs = l.kernel_area * l.out_positions;
            c.pair_params = l.kernel_area;
            c.per_out_params = (l.bias.empty() ? 0 : 1) + (l.bn ? 2 : 0);
            c.counts_filters = l.counts_as_filters;
        }
        const auto& gs = net.groups();
        sizes_.resize(gs.size());
        for (std::size_t g = 0; g < gs.size(); ++g) {
            sizes_[g] = gs[g].size;
            for (const auto& m : gs[g].members) layers_[static_cast<std::size_t>(m.layer)].out_groups.push_back(static_cast<index>(g));
            for (const auto& c : gs[g].consumers) layers_[static_cast<std::size_t>(c.layer)].in_groups.push_back(static_cast<index>(g));
        }
        full_ = per_layer(sizes_);
        build_terms();
        id_ = detail::next_cost_model_id();
    }

    std::size_t group_count() const noexcept { return sizes_.size(); }
    std::span<const index> group_sizes() const noexcept { return sizes_; }
    const cost& full() const noexcept { return full_; }
    /// Names this model's contents: models built apart have different ids,
    /// copies share the id (and the contents); 0 for a default-built one. A
    /// caller may key a result it computed from the model on it.
    std::uint64_t id() const noexcept { return id_; }

    /// Cost when group g keeps kept[g] of its channels.
    cost evaluate(std::span<const index> kept) const {
        check_kept(kept, "evaluate");
        cost c = full_;
        for (std::size_t g = 0; g < sizes_.size(); ++g) {
            const std::int64_t r = sizes_[g] - kept[g];
            c.macs -= linear_[g].macs * r;
            c.params -= linear_[g].params * r;
            c.filters -= linear_[g].filters * r;
        }
        for (const auto& t : pairs_) {
            const std::int64_t rr = std::int64_t(sizes_[t.g] - kept[t.g]) * (sizes_[t.h] - kept[t.h]);
            c.macs += t.macs * rr;
            c.params += t.params * rr;
        }
        return c;
    }
    /// evaluate(kept).of(k) from the channels removed per group (removed[g]
    /// = size - kept[g]), for solvers that price many candidate counts.
    std::int64_t cost_of_removed(budget_kind k, std::span<const index> removed) const {
        if (removed.size() != sizes_.size())
            detail::fail("psap::cost_model: ", removed.size(), " removed counts for ", sizes_.size(), " groups");
        const auto field = k == budget_kind::flops ? &cost::macs : k == budget_kind::params ? &cost::params : &cost::filters;
        std::int64_t c = full_.*field;
        for (std::size_t g = 0; g < sizes_.size(); ++g) c -= linear_[g].*field * removed[g];
        if (k != budget_kind::filters)
            for (const auto& t : pairs_) c += (k == budget_kind::flops ? t.macs : t.params) * (std::int64_t(removed[t.g]) * removed[t.h]);
        return c;
    }

    /// Fraction of the full cost of kind k removed when keeping kept[g].
    double reduction(budget_kind k, std::span<const index> kept) const { return reduction(k, evaluate(kept)); }
    /// The same for a cost already evaluated.
    double reduction(budget_kind k, const cost& c) const {
        const auto f = full_.of(k);
        return f == 0 ? 0.0 : 1.0 - static_cast<double>(c.of(k)) / static_cast<double>(f);
    }

    /// Per-layer widths under kept counts (for reports and compaction).
    struct layer_width {
        std::string name;
        index out_before, out_after, in_before, in_after;
        std::int64_t macs_before, macs_after, params_before, params_after;
    };
    std::vector<layer_width> widths(std::span<const index> kept) const {
        check_kept(kept, "widths");
        std::vector<layer_width> r;
        r.reserve(layers_.size());
        for (const auto& l : layers_) {
            const index out = l.out - removed(l.out_groups, kept);
            const index in = l.in - removed(l.in_groups, kept);
            r.push_back({l.name, l.out, out, l.in, in, l.out * l.in * l.pair_macs, std::int64_t(out) * in * l.pair_macs,
                         l.out * l.in * l.pair_params + l.out * l.per_out_params,
                         std::int64_t(out) * in * l.pair_params + std::int64_t(out) * l.per_out_params});
        }
        return r;
    }

private:
    void check_kept(std::span<const index> kept, const char* who) const {
        if (kept.size() != sizes_.size())
            detail::fail("psap::cost_model::", who, ": ", kept.size(), " kept counts for ", sizes_.size(), " groups");
        for (std::size_t g = 0; g < sizes_.size(); ++g)
            if (kept[g] < 0 || kept[g] > sizes_[g])
                detail::fail("psap::cost_model::", who, ": group ", g, " keeps ", kept[g], " of its ", sizes_[g],
                             " channels; a kept count lies in [0, size]");
    }
    /// r_g * r_h's coefficient: the layers whose outputs shrink with g and inputs with h.
    struct pair_term {
        std::size_t g = 0, h = 0;
        std::int64_t macs = 0, params = 0;
    };
    struct layer_cost {
        std::string name;
        std::int64_t out = 0, in = 0, pair_macs = 0, pair_params = 0, per_out_params = 0;
        bool counts_filters = true;
        std::vector<index> out_groups, in_groups;
    };
    std::int64_t removed(const std::vector<index>& gs, std::span<const index> kept) const {
        std::int64_t r = 0;
        for (index g : gs) r += sizes_[static_cast<std::size_t>(g)] - kept[static_cast<std::size_t>(g)];
        return r;
    }

    /// The per-layer sum, layer by layer: the definition evaluate() expands.
    cost per_layer(std::span<const index> kept) const {
        cost c;
        for (const auto& l : layers_) {
            const std::int64_t out = l.out - removed(l.out_groups, kept);
            const std::int64_t in = l.in - removed(l.in_groups, kept);
            c.macs += out * in * l.pair_macs;
            c.params += out * in * l.pair_params + out * l.per_out_params;
            if (l.counts_filters) c.filters += out;
        }
        return c;
    }

    /// A layer costs p (O - R_out)(I - R_in) + q (O - R_out), R the channels
    /// removed by its groups on each side: expanded, the full cost minus a
    /// per-group linear term plus one product per (output group, input
    /// group) pair. Integers, so evaluate() equals per_layer() exactly, and
    /// a solver pricing dozens of candidate counts per step pays per group,
    /// not per layer (docs/schedules.md, "How a cost is evaluated").
    void build_terms() {
        linear_.assign(sizes_.size(), cost{});
        std::vector<pair_term> all;
        for (const auto& l : layers_) {
            for (index g : l.out_groups) {
                auto& t = linear_[static_cast<std::size_t>(g)];
                t.macs += l.pair_macs * l.in;
                t.params += l.pair_params * l.in + l.per_out_params;
                if (l.counts_filters) t.filters += 1;
            }
            for (index h : l.in_groups) {
                auto& t = linear_[static_cast<std::size_t>(h)];
                t.macs += l.pair_macs * l.out;
                t.params += l.pair_params * l.out;
            }
            for (index g : l.out_groups)
                for (index h : l.in_groups)
                    all.push_back({static_cast<std::size_t>(g), static_cast<std::size_t>(h), l.pair_macs, l.pair_params});
        }
        std::sort(all.begin(), all.end(), [](const pair_term& a, const pair_term& b) { return a.g != b.g ? a.g < b.g : a.h < b.h; });
        pairs_.clear();
        for (const auto& t : all) {
            if (!pairs_.empty() && pairs_.back().g == t.g && pairs_.back().h == t.h) {
                pairs_.back().macs += t.macs;
                pairs_.back().params += t.params;
            } else {
                pairs_.push_back(t);
            }
        }
    }

    std::vector<layer_cost> layers_;
    std::vector<index> sizes_;
    cost full_;
    std::uint64_t id_ = 0;
    std::vector<cost> linear_;       // per group: what one removed channel saves, other groups whole
    std::vector<pair_term> pairs_;   // what removing from both sides of a layer gives back
};

}  // namespace psap
