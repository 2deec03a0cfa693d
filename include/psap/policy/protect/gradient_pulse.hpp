#pragma once
/// \file gradient_pulse.hpp
/// PSAP's protector (docs/psap.md, steps 2-3). Over the first `window`
/// iterations after a step it accumulates g_i = mean |v_i|, where v_i is the
/// derivative of the loss along channel i's gate:
///   with batch norm: the gate gradient (one-sided as gamma rises from 0 for a
///   gated channel; dL/dgamma for an active one), summed over members;
///   without: <F_i, dL/dF_i> for an active filter and <snapshot_i, dL/dF_i>
///   for a zeroed one (the derivative of restoring it).
/// Gated and active channels are then on one scale. At a step, a pruned
/// channel with g_i > kappa * median(active g) is restored (strongest first,
/// at most ceil(restore_fraction * q)), and an active channel with
/// g_i > kappa_keep * median(active g) is shielded; restored + shielded
/// <= min(floor(rho q), N - q). Nothing happens in the final phase.

#include <psap/backend/cpu.hpp>
#include <psap/error.hpp>
#include <psap/policy/context.hpp>
#include <psap/policy/measure.hpp>
#include <psap/policy/reconstruct/snapshot_store.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <vector>

namespace psap {

struct gradient_pulse {
    index window = 20;              ///< K: iterations after a step that are observed
    double kappa = 3.0;             ///< restore threshold, in medians of active g
    double kappa_keep = 3.0;        ///< protection threshold, in medians of active g
    bool restore = true;
    bool protect = true;
    double restore_fraction = 0.1;  ///< at most ceil(restore_fraction * q) restores per group and step
    double rho = 0.5;               ///< restored + protected <= min(floor(rho q), N - q)

    static constexpr const char* name = "gradient_pulse";

    template <class V>
    void fields(V&& v) {
        v("window", window);
        v("kappa", kappa);
        v("kappa_keep", kappa_keep);
        v("restore", restore);
        v("protect", protect);
        v("restore_fraction", restore_fraction);
        v("rho", rho);
    }

    template <class Net>
    void bind(const Net& net) {
        acc_.clear();
        for (const auto& g : net.groups()) acc_.emplace_back(static_cast<std::size_t>(g.size), 0.0);
        pulses_.assign(acc_.size(), 0);
        count_ = 0;
        work_.ready = false;
    }

    template <class Net>
    void observe(const Net& net, const observe_context<Net>& octx) {
        if (octx.info.iterations_since_step >= window) return;
        work_.ready = false;
        using B = backend_t<typename Net::memory_type>;
        using T = typename Net::value_type;
        using M = typename Net::memory_type;
        using W = matrix_view<T, M>;
        using V = vector_view<T, M>;
        auto& ws = work_.measures.template get<Net>();
        auto& mem = ws.mem;
        mem.assign(net);
        // Gather every member's views (checking them in group order), then one
        // batched read of the gate gradients and one batched call for the
        // filter products <F, dL/dF> and <snapshot, dL/dF> of members without BN.
        auto& gates = ws.buf.vectors;
        auto &as = ws.buf.weights, &bs = ws.buf.paired;
        auto& sizes = ws.buf.sizes;
        gates.clear(), as.clear(), bs.clear(), sizes.clear();
        for (std::size_t g = 0; g < mem.groups(); ++g)
            for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k) {
                const auto& mv = mem.views[k];
                if (mv.bn) {
                    const auto& src = !mv.bn->gate_grad.empty() ? mv.bn->gate_grad : mv.bn->grad_gamma;
                    if (src.empty())
                        detail::fail("psap::gradient_pulse: layer '", mv.source->name,
                                     "' has batch norm but neither a gate_grad nor a grad_gamma view; supply one");
                    gates.push_back(src);
                    sizes.push_back(static_cast<std::size_t>(src.size()));
                } else {
                    if (mv.grad.empty())
                        detail::fail("psap::gradient_pulse: layer '", mv.source->name, "' has no gradient view; supply dL/dW");
                    as.push_back(mv.weight);
                    bs.push_back(mv.grad);
                }
            }
        // <snapshot, dL/dF> follows <F, dL/dF> in the same batch.
        const std::size_t plain = as.size();
        for (std::size_t g = 0; g < mem.groups(); ++g)
            for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k)
                if (!mem.views[k].bn) {
                    as.push_back(octx.snapshots.member_filters(static_cast<index>(g), k - mem.first[g]));
                    bs.push_back(mem.views[k].grad);
                }
        auto &gate = ws.a, &dots = ws.b;
        gate.resize(sizes);
        if (!gates.empty()) B::read_batch(std::span<const V>(gates), gate.all());
        sizes.clear();
        for (const auto& a : as) sizes.push_back(static_cast<std::size_t>(a.rows()));
        dots.resize(sizes);
        if (!as.empty()) B::row_dots_batch(std::span<const W>(as), std::span<const W>(bs), dots.all());

        auto& v = work_.sum;
        std::size_t next_gate = 0, next_plain = 0;
        for (std::size_t g = 0; g < acc_.size(); ++g) {
            const auto& pruned = octx.groups[g].pruned;
            v.assign(acc_[g].size(), 0.0);
            for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k) {
                if (mem.views[k].bn) {
                    const auto t = gate[next_gate++];
                    for (std::size_t i = 0; i < v.size(); ++i) v[i] += t[i];
                } else {
                    const auto t = dots[next_plain], t2 = dots[plain + next_plain];
                    ++next_plain;
                    for (std::size_t i = 0; i < v.size(); ++i) v[i] += pruned[i] ? t2[i] : t[i];
                }
            }
            for (std::size_t i = 0; i < v.size(); ++i) acc_[g][i] += std::abs(v[i]);
        }
        count_ += 1;
    }

    template <class Net>
    void restores(const Net&, const step_context& ctx, std::span<std::vector<index>> out) {
        std::fill(pulses_.begin(), pulses_.end(), 0);
        if (ctx.info.final_phase || count_ <= 0) return;
        prepare(ctx);
        for (std::size_t g = 0; g < out.size(); ++g) {
            const auto& st = ctx.groups[g];
            const index n = st.size(), q = st.pruned_count();
            if (q == 0) continue;
            const auto& mean = work_.means[g];
            const double med = work_.medians[g];
            if (!(med > 0)) continue;
            auto& cand = work_.cand;
            ranked(mean, [&](std::size_t i) { return int(st.pruned[i] != 0) & int(mean[i] > kappa * med); }, cand);
            pulses_[g] = static_cast<index>(cand.size());
            if (!restore) continue;
            const index cap = std::min<index>({static_cast<index>(std::ceil(restore_fraction * static_cast<double>(q))),
                                               static_cast<index>(std::floor(rho * static_cast<double>(q))), n - q});
            if (static_cast<index>(cand.size()) > cap) cand.resize(static_cast<std::size_t>(std::max<index>(cap, 0)));
            out[g].assign(cand.begin(), cand.end());
        }
    }

    template <class Net>
    void shield(const Net&, const step_context& ctx, std::span<const index> counts, std::span<std::vector<index>> out) {
        if (ctx.info.final_phase || count_ <= 0 || !protect) return;
        prepare(ctx);
        for (std::size_t g = 0; g < out.size(); ++g) {
            const auto& st = ctx.groups[g];
            const index n = st.size(), q = counts[g];
            const auto& mean = work_.means[g];
            const double med = work_.medians[g];
            if (!(med > 0) || q == 0) continue;
            auto& restored = work_.restored;
            restored.assign(static_cast<std::size_t>(n), 0);
            if (!ctx.restored.empty())
                for (index c : ctx.restored[g]) restored[static_cast<std::size_t>(c)] = 1;
            auto& cand = work_.cand;
            ranked(mean, [&](std::size_t i) { return int(st.pruned[i] == 0) & int(restored[i] == 0) & int(mean[i] > kappa_keep * med); }, cand);
            const index used = ctx.restored.empty() ? 0 : static_cast<index>(ctx.restored[g].size());
            const index cap = std::min<index>(static_cast<index>(std::floor(rho * static_cast<double>(q))), n - q) - used;
            if (static_cast<index>(cand.size()) > cap) cand.resize(static_cast<std::size_t>(std::max<index>(cap, 0)));
            out[g].assign(cand.begin(), cand.end());
        }
    }

    void after_step() {
        for (auto& a : acc_) std::fill(a.begin(), a.end(), 0.0);
        count_ = 0;
        work_.ready = false;
    }

    void reduce(const all_reduce_fn& all_reduce) {
        work_.ready = false;
        for (auto& a : acc_) all_reduce(a);
        std::span<double> c(&count_, 1);
        all_reduce(c);
    }

    /// Pruned channels above the restore threshold at the last step (before the cap).
    index pulses(std::size_t g) const { return g < pulses_.size() ? pulses_[g] : 0; }
    /// Mean statistic g_i of group g over the observed iterations.
    std::vector<double> means(std::size_t g) const {
        std::vector<double> m;
        means(g, m);
        return m;
    }
    /// The same into `m` (its memory reused).
    void means(std::size_t g, std::vector<double>& m) const {
        m.assign(acc_[g].size(), 0.0);
        if (count_ > 0)
            for (std::size_t i = 0; i < m.size(); ++i) m[i] = acc_[g][i] / count_;
    }

    void save(nlohmann::json& j) const { j = {{"acc", acc_}, {"count", count_}}; }
    /// After bind(): the state must match the bound network's group sizes.
    void load(const nlohmann::json& j) {
        auto acc = j.at("acc").get<std::vector<std::vector<double>>>();
        if (!same_shape(acc, acc_))
            detail::fail("psap::gradient_pulse: the saved statistics do not match the network's groups; the state blob is corrupt");
        acc_ = std::move(acc);
        count_ = j.at("count").get<double>();
        work_.ready = false;
        pulses_.assign(acc_.size(), 0);
    }

private:
    static bool same_shape(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (a[i].size() != b[i].size()) return false;
        return true;
    }

    /// Indices passing `keep` into r, by decreasing statistic, ties by index.
    /// Both callers keep only statistics above a positive threshold (never
    /// NaN), so (statistic, index) is a strict total order and std::sort gives
    /// stable_sort's order without its temporary buffer.
    template <class Pred>
    static void ranked(const std::vector<double>& stat, Pred keep, std::vector<index>& r) {
        r.clear();
        detail::append_where(stat.size(), keep, r);
        std::sort(r.begin(), r.end(), [&](index a, index b) {
            const double sa = stat[static_cast<std::size_t>(a)], sb = stat[static_cast<std::size_t>(b)];
            return sa > sb || (!(sb > sa) && a < b);
        });
    }

    /// Every group's means and active median, shared by restores() and
    /// shield() of one step (the same statistics under the same pre-step
    /// masks). Reused while the statistics are unchanged (observe, reduce,
    /// after_step and load drop them) and the masks equal the copy kept here.
    void prepare(const step_context& ctx) {
        auto& w = work_;
        std::size_t total = 0;
        for (const auto& st : ctx.groups) total += st.pruned.size();
        bool same = w.ready && w.means.size() == ctx.groups.size() && w.masks.size() == total;
        for (std::size_t g = 0, o = 0; same && g < ctx.groups.size(); o += ctx.groups[g].pruned.size(), ++g)
            same = std::equal(ctx.groups[g].pruned.begin(), ctx.groups[g].pruned.end(), w.masks.begin() + static_cast<std::ptrdiff_t>(o));
        if (same) return;
        w.masks.clear();
        w.means.resize(ctx.groups.size());
        w.medians.resize(ctx.groups.size());
        for (std::size_t g = 0; g < ctx.groups.size(); ++g) {
            const auto& pruned = ctx.groups[g].pruned;
            w.masks.insert(w.masks.end(), pruned.begin(), pruned.end());
            means(g, w.means[g]);
            w.medians[g] = measure::active_median(w.means[g], pruned, w.median);
        }
        w.ready = true;
    }

    /// Per-step working memory (no state).
    struct workspace {
        std::vector<std::vector<double>> means;  ///< g_i of every group (prepare)
        std::vector<double> medians;             ///< median of the active g_i (prepare)
        std::vector<std::uint8_t> masks;         ///< the masks they were computed under
        bool ready = false;
        std::vector<double> median;
        std::vector<index> cand;
        std::vector<std::uint8_t> restored;
        std::vector<double> sum;           ///< one group's statistic of one iteration (observe)
        measure::workspace_slot measures;  ///< gathered views and batched outputs (observe)
    };
    workspace work_;

    std::vector<std::vector<double>> acc_;
    std::vector<index> pulses_;
    double count_ = 0;
};

}  // namespace psap
