#pragma once
/// \file context.hpp
/// What the pruner hands its policies: the step being taken, the state before
/// it, and the decisions already made at this step.

#include <psap/network/budget.hpp>
#include <psap/tensor/memory.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <span>
#include <vector>

namespace psap {

/// When a step happens.
struct step_info {
    index step = 0;            ///< 0-based count of step() calls so far
    double epoch = 0;          ///< as passed to step(): epochs of training completed
    double progress = 0;       ///< epoch / total_epochs, in [0, 1]
    bool final_phase = false;  ///< masks are frozen (no restores, no re-allocation)
};

/// Per-group state the pruner keeps between steps.
struct group_state {
    std::vector<std::uint8_t> pruned;  ///< 1 = channel is pruned (gated or zeroed)
    double ratio = 0;                  ///< p_g chosen at the last step
    double budget = 0;                 ///< B_t of the last step (0 before any pruning)

    index pruned_count() const noexcept {
        index n = 0;
        for (auto p : pruned) n += p;
        return n;
    }
    index size() const noexcept { return static_cast<index>(pruned.size()); }
};

inline constexpr double not_measured = std::numeric_limits<double>::quiet_NaN();

/// Read-only view of one step for the policies. Filled in this order:
/// restored (protector) -> scores (criterion) -> plan (schedule) -> shield.
struct step_context {
    const cost_model& costs;
    const budget& target;  ///< the final budget
    const step_info& info;
    std::span<const group_state> groups;  ///< state before this step
    index keep_multiple = 1;              ///< kept counts are rounded up to a multiple of this
    std::span<const std::vector<index>> restored = {};  ///< channels the protector restores now
    std::span<const std::vector<double>> scores = {};   ///< criterion scores (lower = prune first)
};

/// The schedule's decision for one step.
struct schedule_plan {
    double budget_now = 0;      ///< B_t, the fraction of cost to remove at this step
    double mu = not_measured;   ///< allocation offset found by bisection
    bool relaxed = false;       ///< the per-step rate limit had to be relaxed to meet B_t
    std::vector<double> ratio;  ///< p_g
    std::vector<index> count;   ///< q_g channels to prune in group g
    std::vector<double> sparsity;  ///< s_g (not_measured when the schedule has no such signal)
    std::vector<double> pressure;  ///< r_g

    void resize(std::size_t groups) {
        ratio.assign(groups, 0.0);
        count.assign(groups, 0);
        sparsity.assign(groups, not_measured);
        pressure.assign(groups, not_measured);
    }
    /// A fresh plan for `groups` groups that reuses the vectors' memory.
    void reset(std::size_t groups) {
        budget_now = 0;
        mu = not_measured;
        relaxed = false;
        resize(groups);
    }
};

/// What changes in one group at a step; handed to the reconstruction policy.
struct group_update {
    std::vector<index> pruned;        ///< every channel pruned after the step (ascending)
    std::vector<index> newly_pruned;  ///< was active, now pruned
    std::vector<index> restored;      ///< restored from the snapshot by the protector's decision
    std::vector<index> released;      ///< was pruned, no longer selected (quota fell)
};

namespace detail {
/// Appends to r the indices i < n with keep(i), ascending. Branch-free: masks
/// and thresholds vary channel by channel, so a branch per index is
/// mispredicted about half the time, which cost more than the whole loop
/// (measured in docs/benchmarks.md). `keep` should combine its tests with
/// `&` on ints, not `&&`, for the same reason.
template <class Keep>
void append_where(std::size_t n, Keep&& keep, std::vector<index>& r) {
    const std::size_t base = r.size();
    r.resize(base + n);
    std::size_t k = base;
    for (std::size_t i = 0; i < n; ++i) {
        r[k] = static_cast<index>(i);
        k += static_cast<std::size_t>(static_cast<bool>(keep(i)));
    }
    r.resize(k);
}

/// Bit j set where byte j of the eight at p has a bit of `mask`: the flags
/// of eight channels in one word (each byte's test moved to its top bit,
/// then the eight top bits gathered by one multiply).
inline std::uint64_t bits_where8(const std::uint8_t* p, std::uint8_t mask) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ull, low7 = 0x7f7f7f7f7f7f7f7full, top = 0x8080808080808080ull;
    std::uint64_t x;
    std::memcpy(&x, p, 8);
    x &= ones * mask;
    const std::uint64_t nz = (((x & low7) + low7) | x) & top;  // 0x80 in each byte with a bit of mask
    return ((nz >> 7) * 0x0102040810204080ull) >> 56;
}

/// Bit j set where bytes[j] & mask != 0, for the n <= 64 bytes from `bytes`.
inline std::uint64_t bits_where(const std::uint8_t* bytes, std::size_t n, std::uint8_t mask) noexcept {
    std::uint64_t m = 0;
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8) m |= bits_where8(bytes + j, mask) << j;
    for (; j < n; ++j) m |= std::uint64_t((bytes[j] & mask) != 0) << j;
    return m;
}

/// Appends base + j for every set bit j of m, ascending: one step per index
/// listed, for lists much shorter than the channels they are drawn from.
inline void append_bits(std::uint64_t m, index base, std::vector<index>& r) {
    const std::size_t k0 = r.size();
    r.resize(k0 + static_cast<std::size_t>(std::popcount(m)));
    for (std::size_t k = k0; m; m &= m - 1) r[k++] = base + std::countr_zero(m);
}

/// Appends to r the indices i < n with bytes[i] != 0 (or == 0 when `zero`),
/// ascending: a mask's listed channels 64 at a time (bits_where, append_bits).
inline void append_nonzero(const std::uint8_t* bytes, std::size_t n, std::vector<index>& r, bool zero = false) {
    for (std::size_t c0 = 0; c0 < n; c0 += 64) {
        const std::size_t len = std::min<std::size_t>(64, n - c0);
        const std::uint64_t all = len == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << len) - 1;
        const std::uint64_t set = bits_where(bytes + c0, len, 0xff);
        append_bits(zero ? ~set & all : set, static_cast<index>(c0), r);
    }
}
/// The indices i < n with bytes[i] == 0, ascending.
inline void append_zero(const std::uint8_t* bytes, std::size_t n, std::vector<index>& r) { append_nonzero(bytes, n, r, true); }
}  // namespace detail

/// Iteration counters seen by observe().
struct observe_info {
    index iteration = 0;             ///< observe() calls since the pruner was created
    index iterations_since_step = 0; ///< observe() calls since the last step()
};

template <class Net>
class snapshot_store;

/// What observe() hands the policies.
template <class Net>
struct observe_context {
    const observe_info& info;
    std::span<const group_state> groups;
    snapshot_store<Net>& snapshots;
};

/// Sums a buffer elementwise across data-parallel workers, in place (an
/// MPI_Allreduce with MPI_SUM, NCCL's all-reduce, ...). Supplied by the user.
using all_reduce_fn = std::function<void(std::span<double>)>;

}  // namespace psap
