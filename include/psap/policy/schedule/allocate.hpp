#pragma once
/// \file allocate.hpp
/// The budget solver every schedule shares: p_g = clip(d_g + mu, lo_g, hi_g),
/// q_g = floor(p_g * N_g), with the smallest mu whose integer counts remove at
/// least B_t of the cost. Costs are integers, so the answer never depends on
/// the order of layers or groups.

#include <psap/error.hpp>
#include <psap/network/budget.hpp>
#include <psap/policy/context.hpp>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

namespace psap {

/// Channels pruned for ratio p in a group of n: floor(p*n), kept rounded up to
/// a multiple of `multiple`, and at least one channel kept.
inline index pruned_count(double p, index n, index multiple = 1) {
    // 1e-9 absorbs representation error (0.3 * 10 = 2.9999999999999996). It is added to
    // the ratio, not to the product, so groups whose breakpoints k/n coincide (4/16 and 6/24)
    // cross them at the same p: a tolerance on p*n would split them into a sliver of width
    // ~1e-9 (1/16 - 1/24) in which "one common ratio" prunes 4/16 but only 5/24.
    index q = static_cast<index>(std::floor((std::clamp(p, 0.0, 1.0) + 1e-9) * static_cast<double>(n)));
    index kept = n - q;
    if (multiple > 1) {
        // Rounded up without forming kept + multiple, which overflows for a
        // huge multiple; a multiple beyond n keeps every channel.
        const index short_by = kept % multiple == 0 ? 0 : multiple - kept % multiple;
        kept = short_by > n - kept ? n : kept + short_by;
    }
    kept = std::max<index>(kept, 1);
    return n - kept;
}

struct allocation {
    double mu = 0;
    bool feasible = true;
    std::vector<double> ratio;
    std::vector<index> count;
};

namespace detail {
/// Group g's ratio at mu: its desired ratio shifted by mu, held in [lo, hi].
inline double ratio_at(double mu, std::span<const double> desired, std::span<const double> lo,
                       std::span<const double> hi, std::size_t g) {
    return std::clamp(desired[g] + mu, lo[g], hi[g]);
}
}  // namespace detail

/// Counts for a given mu.
inline void counts_at(double mu, std::span<const double> desired, std::span<const double> lo, std::span<const double> hi,
                      std::span<const index> sizes, index multiple, std::vector<double>& ratio, std::vector<index>& count) {
    ratio.resize(sizes.size());
    count.resize(sizes.size());
    for (std::size_t g = 0; g < sizes.size(); ++g) {
        ratio[g] = detail::ratio_at(mu, desired, lo, hi, g);
        count[g] = pruned_count(ratio[g], sizes[g], multiple);
    }
}

/// Working memory of allocate(): a caller allocating at every step keeps one
/// and reuses its vectors' memory.
struct allocation_workspace {
    std::vector<index> count_lo, count_hi;
    std::vector<std::size_t> open, follower, rep;
};

/// Finds the smallest mu meeting `target` (fraction of `kind` removed), into
/// `a` (its vectors are reused). When even mu = +inf (every group at hi)
/// misses it, gives feasible = false with the counts at hi.
inline void allocate(const cost_model& costs, budget_kind kind, double target, std::span<const double> desired,
                     std::span<const double> lo, std::span<const double> hi, index multiple, allocation& a,
                     allocation_workspace& w) {
    const std::size_t n = costs.group_count();
    if (desired.size() != n || lo.size() != n || hi.size() != n)
        detail::fail("psap::allocate: ", desired.size(), " desired ratios for ", n, " groups");
    const auto sizes = costs.group_sizes();
    const double full = static_cast<double>(costs.full().of(kind));
    const double limit = full * (1.0 - target);  // the cost we may keep
    auto meets = [&](const std::vector<index>& count) { return static_cast<double>(costs.cost_of_removed(kind, count)) <= limit; };
    a.mu = 0;
    a.feasible = true;
    double dmin = 0, dmax = 0;
    for (std::size_t g = 0; g < n; ++g) {
        dmin = std::min(dmin, desired[g]);
        dmax = std::max(dmax, desired[g]);
    }
    double mu_lo = -1.0 - dmax, mu_hi = 1.0 - dmin;  // every p at lo, every p at hi
    counts_at(mu_lo, desired, lo, hi, sizes, multiple, a.ratio, a.count);
    if (meets(a.count)) {
        a.mu = mu_lo;
        return;
    }
    auto& count_lo = w.count_lo;
    count_lo.assign(a.count.begin(), a.count.end());  // counts at mu_lo: they miss the target
    counts_at(mu_hi, desired, lo, hi, sizes, multiple, a.ratio, a.count);
    if (!meets(a.count)) {
        a.mu = mu_hi;
        a.feasible = false;
        return;
    }
    auto& count_hi = w.count_hi;
    count_hi.assign(a.count.begin(), a.count.end());  // counts at mu_hi: they meet it
    // Whether counts meet the target is a function of the counts alone, so a
    // midpoint with the counts of either end needs no cost evaluation. A
    // group's count is monotone in mu, so a group with equal counts at both
    // ends keeps that count inside the interval: each halving recomputes only
    // the "open" groups, and once the interval lies between two breakpoints a
    // halving costs one or two groups. The midpoints and decisions are those
    // of bisecting over every group.
    // A group with the same desired ratio, bounds and size as the group
    // before it (a stage of equal blocks; every group of a uniform
    // allocation) has that group's count at every mu: only the first of
    // such a run is evaluated, and its followers copy its count before the
    // cost is evaluated.
    auto &open = w.open, &follower = w.follower, &rep = w.rep;
    open.clear(), follower.clear();
    rep.resize(n);
    for (std::size_t g = 0; g < n; ++g) {
        const bool same = g > 0 && desired[g] == desired[g - 1] && lo[g] == lo[g - 1] && hi[g] == hi[g - 1] && sizes[g] == sizes[g - 1];
        rep[g] = same ? rep[g - 1] : g;
        if (same)
            follower.push_back(g);
        else if (count_lo[g] != count_hi[g])
            open.push_back(g);
    }
    std::vector<index>& mid_count = a.count;  // equals count_hi outside `open` and its followers
    for (int it = 0; it < 64 && mu_hi - mu_lo > 1e-12; ++it) {
        const double mid = 0.5 * (mu_lo + mu_hi);
        bool as_hi = true, as_lo = true;
        for (std::size_t g : open) {
            const index c = pruned_count(detail::ratio_at(mid, desired, lo, hi, g), sizes[g], multiple);
            mid_count[g] = c;
            as_hi = as_hi && c == count_hi[g];
            as_lo = as_lo && c == count_lo[g];
        }
        if (!as_hi && !as_lo)
            for (std::size_t f : follower) mid_count[f] = mid_count[rep[f]];
        const bool ok = as_hi ? true : as_lo ? false : meets(mid_count);
        auto& side = ok ? count_hi : count_lo;
        (ok ? mu_hi : mu_lo) = mid;
        for (std::size_t g : open) side[g] = mid_count[g];
        std::erase_if(open, [&](std::size_t g) { return count_lo[g] == count_hi[g]; });
    }
    a.mu = mu_hi;
    counts_at(mu_hi, desired, lo, hi, sizes, multiple, a.ratio, a.count);
}
inline allocation allocate(const cost_model& costs, budget_kind kind, double target, std::span<const double> desired,
                           std::span<const double> lo, std::span<const double> hi, index multiple = 1) {
    allocation a;
    allocation_workspace w;
    allocate(costs, kind, target, desired, lo, hi, multiple, a, w);
    return a;
}

/// Achieved fraction of `kind` removed by the counts.
inline double achieved_reduction(const cost_model& costs, budget_kind kind, std::span<const index> count) {
    const auto sizes = costs.group_sizes();
    std::vector<index> kept(sizes.size());
    for (std::size_t g = 0; g < sizes.size(); ++g) kept[g] = sizes[g] - count[g];
    return costs.reduction(kind, kept);
}

/// The largest reduction reachable with every group at ratio `p_max`.
inline double max_reduction(const cost_model& costs, budget_kind kind, double p_max, index multiple = 1) {
    const auto sizes = costs.group_sizes();
    std::vector<index> count(sizes.size());
    for (std::size_t g = 0; g < sizes.size(); ++g) count[g] = pruned_count(p_max, sizes[g], multiple);
    return achieved_reduction(costs, kind, count);
}

/// Throws the "budget cannot be met" error with the numbers a user needs.
[[noreturn]] inline void fail_budget(const char* who, budget_kind kind, double target, double reachable, double p_max) {
    detail::fail("psap::", who, ": the budget of removing ", target * 100, "% of ", to_string(kind),
                 " cannot be met: with every group at the maximum ratio ", p_max, " only ", reachable * 100,
                 "% is removed; lower the target, raise p_max, or add the remaining layers to groups");
}

}  // namespace psap
