#pragma once
/// \file adaptive_sparsity.hpp
/// PSAP's schedule: before every pruning step each group's ratio is set from
/// its own weight sparsity (docs/psap.md, steps 4-6).
///
///   s_g = #{active i : m_i < delta * median active m} / N_g
///   r_g = restored at this step / N_g
///   d_g = (1 - alpha) p_g(prev) + alpha p_bar + eta (s_g - r_g)
///   p_g = clip(d_g + mu, max(p_min, p_prev - max_change), min(p_max, p_prev + max_change))
/// with the smallest mu whose integer counts remove B_t of the cost, and
/// B_t = B * ramp(progress). The first pruning step is uniform (p_g = p_bar).

#include <psap/backend/cpu.hpp>
#include <psap/policy/context.hpp>
#include <psap/policy/measure.hpp>
#include <psap/policy/schedule/allocate.hpp>
#include <psap/policy/schedule/ramp.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <string_view>
#include <vector>

namespace psap {

namespace detail {
/// adaptive_sparsity's per-step working memory: rebuilt by every plan(),
/// kept so that a step at steady state allocates nothing here.
struct adaptive_sparsity_workspace {
    std::vector<double> zero, lo_all, hi_all, d, lo, hi, median;
    // prepare(): the sparsities it measured, for which step and masks
    std::vector<double> prepared;
    index prepared_step = -1;
    const group_state* prepared_groups = nullptr;
    std::vector<std::vector<double>> magnitudes;
    allocation uniform, chosen;
    // what `uniform` was allocated for (cost model, kind, B_t, p_min, p_max, rounding)
    struct uniform_key {
        std::uint64_t costs = 0;
        budget_kind kind{};
        double budget = -1, p_min = 0, p_max = 0;
        index multiple = 0;
        bool operator==(const uniform_key&) const = default;
    } uniform_for;
    allocation_workspace bisection;
    measure::workspace_slot measures;
};
}  // namespace detail

struct adaptive_sparsity {
    /// How the desired ratios d_g are formed.
    enum class rule {
        leaky,         ///< leaky control toward the uniform ratio (default)
        proportional,  ///< d_g = p_bar * s_g / mean(s)
        uniform,       ///< d_g = p_bar: the ramped-uniform control
    };
    /// What "weight sparsity" counts.
    enum class measure_kind {
        channel,  ///< active channels whose magnitude is below delta * median (default)
        element,  ///< elements of active filters below element_delta * RMS of the member
    };

    double alpha = 0.2;
    double eta = 0.5;
    double delta = 0.25;
    double element_delta = 0.05;
    double p_min = 0.0;
    double p_max = 0.8;
    double max_change = 0.1;
    ramp_shape ramp = ramp_shape::asymptotic;
    double ramp_end = 0.5;
    rule allocation = rule::leaky;
    measure_kind sparsity = measure_kind::channel;
    /// Working memory, neither configuration nor state (not saved, not compared).
    mutable detail::adaptive_sparsity_workspace workspace{};

    static constexpr const char* name = "adaptive_sparsity";

    template <class V>
    void fields(V&& v) {
        v("alpha", alpha);
        v("eta", eta);
        v("delta", delta);
        v("element_delta", element_delta);
        v("p_min", p_min);
        v("p_max", p_max);
        v("max_change", max_change);
        v("ramp", ramp);
        v("ramp_end", ramp_end);
        v("allocation", allocation);
        v("sparsity", sparsity);
    }

    template <class Net>
    void plan(const Net& net, const step_context& ctx, schedule_plan& plan) const {
        validate();
        const auto sizes = ctx.costs.group_sizes();
        const std::size_t n = sizes.size();
        plan.resize(n);
        plan.budget_now = ctx.target.target * ramp_fraction(ramp, ctx.info.progress, ramp_end);
        auto& w = workspace;
        if (w.prepared_step == ctx.info.step && w.prepared_groups == ctx.groups.data() && w.prepared.size() == n)
            std::copy(w.prepared.begin(), w.prepared.end(), plan.sparsity.begin());
        else
            measure_all(net, ctx.groups, plan.sparsity);
        w.prepared_step = -1;
        for (std::size_t g = 0; g < n; ++g) {
            const double restored = ctx.restored.empty() ? 0.0 : static_cast<double>(ctx.restored[g].size());
            plan.pressure[g] = restored / static_cast<double>(sizes[g]);
        }
        if (plan.budget_now <= 0) return;

        // p_bar: the uniform ratio for B_t.
        auto &zero = w.zero, &lo_all = w.lo_all, &hi_all = w.hi_all;
        zero.assign(n, 0.0), lo_all.assign(n, p_min), hi_all.assign(n, p_max);
        auto& uni = w.uniform;
        // p_bar depends on B_t, the bounds and the cost model alone: after
        // the ramp, where B_t stays put, the last step's answer is reused.
        const detail::adaptive_sparsity_workspace::uniform_key key{ctx.costs.id(), ctx.target.kind, plan.budget_now, p_min, p_max,
                                                                   ctx.keep_multiple};
        if (key.costs == 0 || !(w.uniform_for == key)) {
            w.uniform_for = {};
            allocate(ctx.costs, ctx.target.kind, plan.budget_now, zero, lo_all, hi_all, ctx.keep_multiple, uni, w.bisection);
            w.uniform_for = key;
        }
        if (!uni.feasible)
            fail_budget(name, ctx.target.kind, plan.budget_now, achieved_reduction(ctx.costs, ctx.target.kind, uni.count), p_max);
        const double p_bar = std::clamp(uni.mu, p_min, p_max);

        bool first = true;
        for (const auto& s : ctx.groups) first = first && s.budget <= 0;
        auto &d = w.d, &lo = w.lo, &hi = w.hi;
        d.assign(n, p_bar), lo.assign(lo_all.begin(), lo_all.end()), hi.assign(hi_all.begin(), hi_all.end());
        if (!first) {
            double mean_s = 0;
            for (double s : plan.sparsity) mean_s += s;
            mean_s /= static_cast<double>(n);
            for (std::size_t g = 0; g < n; ++g) {
                // Inside [p_min, p_max] by construction, unless the bounds were changed
                // between steps (a resumed run with a new p_max): start from the nearest
                // allowed ratio, so that the window below is never empty.
                const double prev = std::clamp(ctx.groups[g].ratio, p_min, p_max);
                switch (allocation) {
                    case rule::leaky:
                        d[g] = (1 - alpha) * prev + alpha * p_bar + eta * (plan.sparsity[g] - plan.pressure[g]);
                        break;
                    case rule::proportional: d[g] = mean_s > 0 ? p_bar * plan.sparsity[g] / mean_s : p_bar; break;
                    case rule::uniform: d[g] = p_bar; break;
                }
                lo[g] = std::max(p_min, prev - max_change);
                hi[g] = std::min(p_max, prev + max_change);
            }
        }
        auto& a = w.chosen;
        allocate(ctx.costs, ctx.target.kind, plan.budget_now, d, lo, hi, ctx.keep_multiple, a, w.bisection);
        if (!a.feasible) {  // the rate limit cannot reach B_t: relax it for this step
            plan.relaxed = true;
            allocate(ctx.costs, ctx.target.kind, plan.budget_now, d, lo_all, hi_all, ctx.keep_multiple, a, w.bisection);
            if (!a.feasible)
                fail_budget(name, ctx.target.kind, plan.budget_now, achieved_reduction(ctx.costs, ctx.target.kind, a.count), p_max);
        }
        plan.mu = a.mu;
        plan.ratio.assign(a.ratio.begin(), a.ratio.end());
        plan.count.assign(a.count.begin(), a.count.end());
    }

    /// s_g of every group under the masks `groups` for step `step`, measured
    /// ahead of plan(), which then uses these values: it reads only the
    /// network and the masks, so a pruner may run it on another thread while
    /// the criterion and the protector run (docs/schedules.md).
    template <class Net>
    void prepare(const Net& net, std::span<const group_state> groups, index step) const {
        auto& w = workspace;
        w.prepared_step = -1;
        w.prepared.resize(groups.size());
        measure_all(net, groups, w.prepared);
        w.prepared_step = step;
        w.prepared_groups = groups.data();
    }

    /// s_g for group g under the current mask.
    template <class Net>
    double measure(const Net& net, index g, std::span<const std::uint8_t> pruned) const {
        const auto& grp = net.groups()[static_cast<std::size_t>(g)];
        if (sparsity == measure_kind::channel) {
            const auto m = measure::channel_magnitude(net, g);
            const double med = measure::active_median(m, pruned);
            if (!(med > 0)) return 0.0;
            index small = 0;
            for (std::size_t i = 0; i < m.size(); ++i) small += int(pruned[i] == 0) & int(m[i] < delta * med);
            return static_cast<double>(small) / static_cast<double>(grp.size);
        }
        using B = backend_t<typename Net::memory_type>;
        double below = 0, total = 0;
        std::vector<double> sq(static_cast<std::size_t>(grp.size)), cnt(sq.size());
        for (std::size_t mi = 0; mi < grp.members.size(); ++mi) {
            const auto mv = member_of(net, g, mi);
            B::row_sq_norms(mv.weight, sq);
            double ss = 0, elems = 0;
            for (std::size_t i = 0; i < sq.size(); ++i)
                if (!pruned[i]) ss += sq[i], elems += static_cast<double>(mv.weight.cols());
            if (elems == 0) continue;
            B::row_count_below(mv.weight, element_delta * std::sqrt(ss / elems), cnt);
            for (std::size_t i = 0; i < cnt.size(); ++i)
                if (!pruned[i]) below += cnt[i];
            total += elems;
        }
        return total > 0 ? below / total : 0.0;
    }

    /// s_g of every group under the current masks (out[g]), with one batched
    /// backend call per quantity; equal to measure(net, g, groups[g].pruned).
    template <class Net>
    void measure_all(const Net& net, std::span<const group_state> groups, std::span<double> out) const {
        const std::size_t n = groups.size();
        if (sparsity == measure_kind::channel) {
            auto& mags = workspace.magnitudes;
            measure::channel_magnitude_all(net, mags, workspace.measures.template get<Net>());
            for (std::size_t g = 0; g < n; ++g) {
                const auto& m = mags[g];
                const auto& pruned = groups[g].pruned;
                const double med = measure::active_median(m, pruned, workspace.median);
                if (!(med > 0)) {
                    out[g] = 0.0;
                    continue;
                }
                index small = 0;
                for (std::size_t i = 0; i < m.size(); ++i) small += int(pruned[i] == 0) & int(m[i] < delta * med);
                out[g] = static_cast<double>(small) / static_cast<double>(net.groups()[g].size);
            }
            return;
        }
        using B = backend_t<typename Net::memory_type>;
        using W = matrix_view<typename Net::value_type, typename Net::memory_type>;
        const measure::members<Net> mem(net);
        const auto sq = measure::member_row_norms(net, mem, 2);
        // Per member: the threshold from the RMS of its active weights; members
        // without active weights are left out of the count.
        std::vector<double> thresholds, elems(mem.count(), 0.0);
        std::vector<W> counted;
        std::vector<std::size_t> sizes;
        for (std::size_t g = 0; g < n; ++g)
            for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k) {
                const auto& pruned = groups[g].pruned;
                double ss = 0, e = 0;
                for (std::size_t i = 0; i < sq[k].size(); ++i)
                    if (!pruned[i]) ss += sq[k][i], e += static_cast<double>(mem.views[k].weight.cols());
                elems[k] = e;
                if (e == 0) continue;
                thresholds.push_back(element_delta * std::sqrt(ss / e));
                counted.push_back(mem.views[k].weight);
                sizes.push_back(sq[k].size());
            }
        measure::slices cnt(sizes);
        if (!counted.empty())
            B::row_count_below_batch(std::span<const W>(counted), std::span<const double>(thresholds), cnt.all());
        std::size_t next = 0;
        for (std::size_t g = 0; g < n; ++g) {
            const auto& pruned = groups[g].pruned;
            double below = 0, total = 0;
            for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k) {
                if (elems[k] == 0) continue;
                const auto c = cnt[next++];
                for (std::size_t i = 0; i < c.size(); ++i)
                    if (!pruned[i]) below += c[i];
                total += elems[k];
            }
            out[g] = total > 0 ? below / total : 0.0;
        }
    }

    void validate() const {
        if (!(p_min >= 0 && p_min <= p_max && p_max < 1))
            detail::fail("psap::adaptive_sparsity: need 0 <= p_min <= p_max < 1, got p_min = ", p_min, ", p_max = ", p_max);
        if (!(alpha >= 0 && alpha <= 1)) detail::fail("psap::adaptive_sparsity: alpha ", alpha, " is outside [0, 1]");
        if (!(eta >= 0)) detail::fail("psap::adaptive_sparsity: eta ", eta, " must be >= 0");
        if (!(max_change > 0)) detail::fail("psap::adaptive_sparsity: max_change ", max_change, " must be > 0");
        if (!(delta > 0)) detail::fail("psap::adaptive_sparsity: delta ", delta, " must be > 0");
    }
};

inline const char* to_string(adaptive_sparsity::rule r) noexcept {
    switch (r) {
        case adaptive_sparsity::rule::leaky: return "leaky";
        case adaptive_sparsity::rule::proportional: return "proportional";
        case adaptive_sparsity::rule::uniform: return "uniform";
    }
    return "?";
}
inline void from_string(std::string_view s, adaptive_sparsity::rule& r) {
    if (s == "leaky") r = adaptive_sparsity::rule::leaky;
    else if (s == "proportional") r = adaptive_sparsity::rule::proportional;
    else if (s == "uniform") r = adaptive_sparsity::rule::uniform;
    else detail::fail("psap::adaptive_sparsity: unknown allocation '", s, "'; use leaky, proportional or uniform");
}
inline const char* to_string(adaptive_sparsity::measure_kind m) noexcept {
    return m == adaptive_sparsity::measure_kind::channel ? "channel" : "element";
}
inline void from_string(std::string_view s, adaptive_sparsity::measure_kind& m) {
    if (s == "channel") m = adaptive_sparsity::measure_kind::channel;
    else if (s == "element") m = adaptive_sparsity::measure_kind::element;
    else detail::fail("psap::adaptive_sparsity: unknown sparsity measure '", s, "'; use channel or element");
}

}  // namespace psap
