#pragma once
/// \file pruner.hpp
/// pruner<Schedule, Criterion, Protect, Reconstruct>: drives the four policies
/// from any training loop through four hooks:
///   observe(net)       after each backward pass (before the optimizer step)
///   step(net, epoch)   at a pruning point
///   after_update(net)  after each optimizer step
///   finalize(net)      at the end: keep-lists for compaction
/// plus state()/load_state() for identical decisions after a resume.
/// The network is a description holding views; hooks write through them.

#include <psap/backend/cpu.hpp>
#include <psap/error.hpp>
#include <psap/network/budget.hpp>
#include <psap/network/network.hpp>
#include <psap/policy/context.hpp>
#include <psap/policy/criterion/concept.hpp>
#include <psap/policy/protect/concept.hpp>
#include <psap/policy/reconstruct/concept.hpp>
#include <psap/policy/reconstruct/snapshot_store.hpp>
#include <psap/policy/schedule/concept.hpp>
#include <psap/report/result.hpp>
#include <psap/report/step_log.hpp>
#include <psap/state.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iterator>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace psap {

/// Options shared by every policy combination.
struct pruner_options {
    budget target{};
    double total_epochs = 1;   ///< progress = epoch / total_epochs
    double final_phase = 0;    ///< masks are frozen once progress > 1 - final_phase
    index keep_multiple = 1;   ///< kept channels rounded up to a multiple (e.g. 8 for tensor cores)
    bool check_finite = true;  ///< reject NaN/Inf weights and gradients with a psap::error

    void validate() const {
        target.validate();
        if (!(total_epochs > 0)) detail::fail("psap::pruner_options: total_epochs ", total_epochs, " must be positive");
        if (!(final_phase >= 0 && final_phase < 1))
            detail::fail("psap::pruner_options: final_phase ", final_phase, " is outside [0, 1)");
        if (keep_multiple < 1) detail::fail("psap::pruner_options: keep_multiple ", keep_multiple, " must be >= 1");
    }
};

template <class Schedule, class Criterion, class Protect, class Reconstruct, class Net = network<float>>
    requires network_description<Net> && schedule_for<Schedule, Net> && criterion_for<Criterion, Net> &&
             protector_for<Protect, Net> && reconstructor_for<Reconstruct, Net>
class pruner {
public:
    using network_type = Net;
    using schedule_type = Schedule;
    using criterion_type = Criterion;
    using protector_type = Protect;
    using reconstructor_type = Reconstruct;

    pruner() = default;
    explicit pruner(pruner_options options, Schedule s = {}, Criterion c = {}, Protect p = {}, Reconstruct r = {})
        : options_(std::move(options)), schedule_(std::move(s)), criterion_(std::move(c)), protect_(std::move(p)),
          reconstruct_(std::move(r)) {
        options_.validate();
    }

    /// Binds to a network (done implicitly by the first hook): validates it and
    /// sizes all per-network state.
    void bind(const Net& net) {
        net.validate();
        costs_ = cost_model(net);
        fingerprint_ = net.fingerprint();
        structure_.clear();
        visit_structure(net, [&](index v) { structure_.push_back(v); });
        membership_size_ = 0;
        visit_membership(net, [&](index) { ++membership_size_; });
        groups_.assign(net.groups().size(), {});
        for (std::size_t g = 0; g < groups_.size(); ++g) groups_[g].pruned.assign(static_cast<std::size_t>(net.groups()[g].size), 0);
        // Layers whose every filter is a member of some group: their weights
        // enter the criterion's scores (no channel is claimed twice, so
        // claimed rows == output channels means all of them).
        scored_.assign(net.layers().size(), 0);
        std::vector<index> claimed(net.layers().size(), 0);
        for (const auto& g : net.groups())
            for (const auto& m : g.members) claimed[static_cast<std::size_t>(m.layer)] += g.size;
        for (std::size_t l = 0; l < scored_.size(); ++l)
            scored_[l] = net.layers()[l].has_weight() && claimed[l] == net.layers()[l].weight.rows();
        // Member layers, each once, in (group, member) order: observe()'s
        // gradient check scans exactly these.
        member_layers_.clear();
        std::vector<std::uint8_t> seen(net.layers().size(), 0);
        for (const auto& g : net.groups())
            for (const auto& m : g.members)
                if (!std::exchange(seen[static_cast<std::size_t>(m.layer)], std::uint8_t{1})) member_layers_.push_back(m.layer);
        unscored_work_ = 0;
        for (std::size_t l = 0; l < scored_.size(); ++l) {
            const auto& w = net.layers()[l].weight;
            if (net.layers()[l].has_weight() && !scored_[l]) unscored_work_ += w.rows() * w.cols();
        }
        snapshots_.bind(net);
        if constexpr (requires { schedule_.bind(net); }) schedule_.bind(net);
        if constexpr (requires { criterion_.bind(net); }) criterion_.bind(net);
        if constexpr (requires { protect_.bind(net); }) protect_.bind(net);
        if constexpr (requires { reconstruct_.bind(net); }) reconstruct_.bind(net);
        steps_ = iteration_ = since_step_ = 0;
        reduced_ = false;
        log_.clear();
        bound_ = true;
    }

    /// After each backward pass: policies accumulate gradient statistics;
    /// policies that mask gradients do so here.
    void observe(const Net& net) {
        ensure_bound(net);
        check_structure(net, "observe", true);
        if (options_.check_finite) check_gradients(net);
        const observe_info info{iteration_, since_step_};
        observe_context<Net> octx{info, groups_, snapshots_};
        if constexpr (requires { criterion_.observe(net, octx); }) criterion_.observe(net, octx);
        if constexpr (requires { protect_.observe(net, octx); }) protect_.observe(net, octx);
        if constexpr (requires { reconstruct_.mask_gradients_of(net, std::span<const group_state>(groups_)); })
            reconstruct_.mask_gradients_of(net, std::span<const group_state>(groups_));
        ++iteration_;
        ++since_step_;
        reduced_ = false;
    }

    /// A pruning point, `epoch` epochs into training: allocate, score, protect,
    /// select and apply. Returns what was decided.
    /// A step that throws leaves the masks, the network's values and the
    /// policies' statistics as they were: it can be retried.
    const step_log& step(const Net& net, double epoch) {
        try {
            return step_once(net, epoch);
        } catch (...) {
            if constexpr (requires { criterion_.after_failed_step(); }) criterion_.after_failed_step();
            if constexpr (requires { protect_.after_failed_step(); }) protect_.after_failed_step();
            throw;
        }
    }

private:
    const step_log& step_once(const Net& net, double epoch) {
        ensure_bound(net);
        const bool epoch_ok = std::isfinite(epoch) && epoch >= 0;
        step_info info;
        info.step = steps_;
        info.epoch = epoch;
        info.progress = std::clamp(epoch / options_.total_epochs, 0.0, 1.0);
        info.final_phase = options_.final_phase > 0 && info.progress > 1.0 - options_.final_phase + 1e-12;
        const bool frozen = info.final_phase;
        // A criterion whose scores reveal non-finite weights stands in for the
        // scan of the layers it scores (check_scores rescans on a bad score).
        // No decision reads the other layers' weights, so with a second thread
        // their scan, and the BN vectors' scan, runs beside the decisions
        // (decide_beside_scan).
        const bool skip_scored = reveals_nonfinite_weights<Criterion> && !frozen;
        const int team = epoch_ok && options_.check_finite && skip_scored ? team_beside_scan() : 1;
        const bool beside = team > 1;
        // With a second thread the structure is checked inside the step's
        // parallel region, beside the scan (decide_beside_scan).
        if (!beside) {
            check_structure(net);
            if (!epoch_ok) detail::fail("psap::pruner::step: epoch ", epoch, " must be finite and >= 0");
            if (options_.check_finite) check_weights(net, skip_scored);
        }
        // Once per observation window: a step retried after a failure finds
        // the statistics merged already (merging them again would count
        // every worker's share twice, unless nothing was observed between).
        if (reduce_ && !reduced_) {
            if constexpr (requires { criterion_.reduce(reduce_); }) criterion_.reduce(reduce_);
            if constexpr (requires { protect_.reduce(reduce_); }) protect_.reduce(reduce_);
            reduced_ = true;
        }

        const std::size_t n = groups_.size();
        // Per-step lists live in members and keep their capacity across steps.
        auto& restored = scratch_.restored;
        auto& shielded = scratch_.shielded;
        auto& scores = scratch_.scores;
        auto& updates = scratch_.updates;
        auto& plan = scratch_.plan;
        const auto setup = [&] {
            restored.resize(n), shielded.resize(n), scores.resize(n);
            for (std::size_t g = 0; g < n; ++g) {
                restored[g].clear(), shielded[g].clear();
                scores[g].assign(groups_[g].pruned.size(), 0.0);
            }
            updates.resize(n);
            for (auto& u : updates) u.pruned.clear(), u.newly_pruned.clear(), u.restored.clear(), u.released.clear();
            plan.reset(n);
        };
        step_context ctx{costs_, options_.target, info, groups_, options_.keep_multiple};
        step_log entry;
        entry.step = info.step;
        entry.epoch = epoch;
        entry.progress = info.progress;

        // The log entry, from the decisions alone (never the network's values
        // or the masks): with a second thread it is written while the helper
        // still scans (decide_beside_scan).
        const auto summarise = [&] {
            entry.frozen = frozen;
            entry.budget_now = plan.budget_now;
            entry.mu = plan.mu;
            entry.relaxed = plan.relaxed;
            auto& kept = scratch_.kept;
            kept.resize(n);
            for (std::size_t g = 0; g < n; ++g) kept[g] = groups_[g].size() - static_cast<index>(updates[g].pruned.size());
            entry.achieved = costs_.evaluate(kept);
            entry.reduction = costs_.reduction(options_.target.kind, entry.achieved);
            entry.groups.resize(n);
            for (std::size_t g = 0; g < n; ++g) {
                auto& d = entry.groups[g];
                d.group = net.groups()[g].name;
                d.size = groups_[g].size();
                d.sparsity = plan.sparsity[g];
                d.pressure = plan.pressure[g];
                d.ratio = plan.ratio[g];
                d.target = plan.count[g];
                d.pruned = static_cast<index>(updates[g].pruned.size());
                d.newly_pruned = static_cast<index>(updates[g].newly_pruned.size());
                d.restored = static_cast<index>(updates[g].restored.size());
                d.released = static_cast<index>(updates[g].released.size());
                d.protected_count = static_cast<index>(shielded[g].size());
                // a frozen step asks the protector nothing: its pulse count is from an older step
                if constexpr (requires { protect_.pulses(g); })
                    if (!frozen) d.pulses = protect_.pulses(g);
            }
        };
        if (frozen) {
            setup();
            for (std::size_t g = 0; g < n; ++g) {
                detail::pruned_list(groups_[g], updates[g].pruned);
                plan.ratio[g] = groups_[g].ratio;
                plan.count[g] = static_cast<index>(updates[g].pruned.size());
            }
            plan.budget_now = n ? groups_[0].budget : 0;
        } else {
            // What the schedule measures of the network alone (its prepare():
            // no decision of this step goes into it) runs on another thread
            // when decide_beside_scan has one free, beside the restores and scores.
            cpu_detail::side_task prepared;
            const auto prepare = [&] {
                if constexpr (requires { schedule_.prepare(net, std::span<const group_state>(groups_), info.step); })
                    schedule_.prepare(net, std::span<const group_state>(groups_), info.step);
            };
            const auto decide = [&] {
                protect_.restores(net, ctx, restored);
                for (std::size_t g = 0; g < n; ++g)
                    for (index c : restored[g])
                        if (c < 0 || c >= groups_[g].size() || !groups_[g].pruned[static_cast<std::size_t>(c)])
                            detail::fail("psap::pruner: the protector restored channel ", c, " of group '", net.groups()[g].name,
                                         "', which is not pruned");
                ctx.restored = restored;
                criterion_.score(net, ctx, scores);
                check_scores(net, scores);
                ctx.scores = scores;
                prepared.run_or_wait(prepare);
                schedule_.plan(net, ctx, plan);
                for (std::size_t g = 0; g < n; ++g) {
                    const index size = groups_[g].size();
                    if (plan.count[g] < 0 || plan.count[g] >= size)
                        detail::fail("psap::pruner: the schedule asked to prune ", plan.count[g], " of the ", size,
                                     " channels of group '", net.groups()[g].name, "'; a group keeps at least one channel");
                    // Restores beyond what the quota leaves are dropped, weakest first.
                    if (static_cast<index>(restored[g].size()) > size - plan.count[g])
                        restored[g].resize(static_cast<std::size_t>(size - plan.count[g]));
                }
                protect_.shield(net, ctx, plan.count, shielded);
                for (std::size_t g = 0; g < n; ++g)
                    select(net, g, plan.count[g], scores[g], restored[g], shielded[g], updates[g], entry);
            };
            if (beside) {
                decide_beside_scan(net, setup, decide, team, prepared, prepare, summarise);
            } else {
                setup();
                decide();
            }
        }
        reconstruct_.apply(net, ctx, updates, snapshots_);
        if (!beside) summarise();
        for (std::size_t g = 0; g < n; ++g) {
            auto& st = groups_[g];
            std::fill(st.pruned.begin(), st.pruned.end(), std::uint8_t{0});
            for (index c : updates[g].pruned) st.pruned[static_cast<std::size_t>(c)] = 1;
            st.ratio = plan.ratio[g];
            st.budget = plan.budget_now;
        }

        if constexpr (requires { criterion_.after_step(); }) criterion_.after_step();
        if constexpr (requires { protect_.after_step(); }) protect_.after_step();
        ++steps_;
        since_step_ = 0;
        reduced_ = false;
        log_.push_back(std::move(entry));
        return log_.back();
    }

public:
    /// After each optimizer step: hold gated / hard-pruned channels.
    void after_update(const Net& net) {
        ensure_bound(net);
        check_structure(net, "after_update", true);
        reconstruct_.after_update(net, std::span<const group_state>(groups_), snapshots_);
    }

    /// The final keep-lists and per-layer widths (does not change masks).
    pruning_result finalize(const Net& net) {
        ensure_bound(net);
        check_structure(net, "finalize");
        if constexpr (requires { reconstruct_.finish(net, std::span<const group_state>(groups_), snapshots_); })
            reconstruct_.finish(net, std::span<const group_state>(groups_), snapshots_);
        pruning_result r;
        std::vector<index> kept(groups_.size()), full(groups_.size());
        for (std::size_t g = 0; g < groups_.size(); ++g) {
            group_keep k{net.groups()[g].name, groups_[g].size(), {}};
            for (std::size_t c = 0; c < groups_[g].pruned.size(); ++c)
                if (!groups_[g].pruned[c]) k.kept.push_back(static_cast<index>(c));
            kept[g] = static_cast<index>(k.kept.size());
            full[g] = groups_[g].size();
            r.groups.push_back(std::move(k));
        }
        r.layers = costs_.widths(kept);
        r.before = costs_.evaluate(full);
        r.after = costs_.evaluate(kept);
        return r;
    }

    /// Everything a resumed run needs to decide identically (CBOR bytes).
    std::vector<std::uint8_t> state() const {
        if (!bound_) detail::fail("psap::pruner::state: the pruner is not bound to a network yet");
        nlohmann::json j;
        j["steps"] = steps_;
        j["iteration"] = iteration_;
        j["since_step"] = since_step_;
        for (const auto& g : groups_)
            j["groups"].push_back({{"pruned", nlohmann::json::binary(std::vector<std::uint8_t>(g.pruned))},
                                   {"ratio", g.ratio},
                                   {"budget", g.budget}});
        save_policy(j["schedule"], schedule_);
        save_policy(j["criterion"], criterion_);
        save_policy(j["protect"], protect_);
        save_policy(j["reconstruct"], reconstruct_);
        j["snapshots"] = save_snapshots();
        j["log"] = log_;
        return wrap_state(j, fingerprint_);
    }

    /// Restores state() output. The network must have the same structure. On any
    /// error the pruner is left freshly bound to `net`, never half loaded.
    void load_state(const Net& net, std::span<const std::uint8_t> blob) {
        bind(net);
        try {
            load_state_json(net, parse_state(blob, fingerprint_, groups_.size()));
        } catch (const nlohmann::json::exception& e) {
            bind(net);
            detail::fail("psap::pruner::load_state: the state blob is corrupt (", e.what(), "); pass the exact bytes returned by state()");
        } catch (...) {
            bind(net);
            throw;
        }
    }

    /// Combine observe() statistics across data-parallel workers at each step.
    void set_all_reduce(all_reduce_fn f) { reduce_ = std::move(f); }

    std::span<const group_state> groups() const noexcept { return groups_; }
    const std::vector<step_log>& log() const noexcept { return log_; }
    /// Hands over the log's entries and empties it (its capacity kept): a
    /// long run can write entries out as they come, e.g. as JSON lines,
    /// instead of holding every step in memory and in state(). Decisions
    /// never read the log.
    std::vector<step_log> take_log() {
        std::vector<step_log> out(std::make_move_iterator(log_.begin()), std::make_move_iterator(log_.end()));
        log_.clear();
        return out;
    }
    const pruner_options& options() const noexcept { return options_; }
    const cost_model& costs() const noexcept { return costs_; }
    index steps_taken() const noexcept { return steps_; }
    Schedule& schedule() noexcept { return schedule_; }
    Criterion& criterion() noexcept { return criterion_; }
    Protect& protector() noexcept { return protect_; }
    Reconstruct& reconstructor() noexcept { return reconstruct_; }

private:
    void ensure_bound(const Net& net) {
        if (!bound_) bind(net);
    }

    /// f(v) for the part of the structure the per-iteration hooks (observe,
    /// after_update) index by: the layer count and each group's size and
    /// members. A prefix of visit_structure().
    template <class F>
    static void visit_membership(const Net& net, F&& f) {
        f(static_cast<index>(net.layers().size()));
        f(static_cast<index>(net.groups().size()));
        for (const auto& g : net.groups()) {
            f(g.size), f(static_cast<index>(g.members.size()));
            for (const auto& m : g.members) f(m.layer), f(m.offset);
        }
    }
    /// f(v) for every integer of the network's structure (groups, members,
    /// geometry, consumers) in a fixed order: what every per-group state the
    /// pruner holds is sized by. Comparing these each step costs a fraction
    /// of hashing the whole description (names included) into fingerprint().
    template <class F>
    static void visit_structure(const Net& net, F&& f) {
        visit_membership(net, f);
        for (const auto& l : net.layers()) {
            f(l.out_channels), f(l.in_channels), f(l.kernel_area), f(l.out_positions);
            f(l.bias.empty() ? 0 : 1), f(l.bn ? 1 : 0);
        }
        for (const auto& g : net.groups()) {
            f(static_cast<index>(g.consumers.size()));
            for (const auto& c : g.consumers) f(c.layer), f(c.offset);
        }
    }
    /// membership_only: compare what visit_membership() visits (the
    /// per-iteration hooks: a fifth of the full comparison's time on ResNet-56,
    /// which would add ~20% to observe()); step() and finalize() compare all.
    void check_structure(const Net& net, const char* hook = "step", bool membership_only = false) const {
        if (!same_structure(net, membership_only))
            detail::fail("psap::pruner::", hook, ": the network's structure changed since the pruner was bound; call bind() again");
    }
    bool same_structure(const Net& net, bool membership_only = false) const {
        // Branch-free: every value is compared (the structure is nearly
        // always the same), so the loads of all layers and groups overlap.
        const std::size_t size = membership_only ? membership_size_ : structure_.size();
        const index* s = structure_.data();
        std::size_t i = 0;
        index diff = 0;
        const auto compare = [&](index v) {
            diff |= i < size ? s[i] ^ v : index{1};
            ++i;
        };
        if (membership_only)
            visit_membership(net, compare);
        else
            visit_structure(net, compare);
        return diff == 0 && i == size;
    }

    /// Lowest scores first (ties by index) among channels neither shielded nor restored.
    void select(const Net& net, std::size_t g, index q, const std::vector<double>& score, const std::vector<index>& restored,
                const std::vector<index>& shielded, group_update& u, step_log& entry) const {
        const auto& st = groups_[g];
        const auto size = static_cast<std::size_t>(st.size());
        // Per channel: restored (excluded from selection), shielded, selected now.
        constexpr std::uint8_t restored_bit = 1, shield_bit = 2, now_bit = 4;
        auto& flag = scratch_.flags;
        flag.assign(size, 0);
        for (index c : restored) flag[static_cast<std::size_t>(c)] = restored_bit;
        for (index c : shielded) {
            if (c < 0 || static_cast<std::size_t>(c) >= size || st.pruned[static_cast<std::size_t>(c)] || flag[static_cast<std::size_t>(c)])
                detail::fail("psap::pruner: the protector shielded channel ", c, " of group '", net.groups()[g].name,
                             "', which is not an active channel");
            flag[static_cast<std::size_t>(c)] = shield_bit;
        }
        // Strict total order on (score, index): the q lowest are the set a stable sort would give.
        const auto below = [&](index a, index b) {
            const double sa = score[static_cast<std::size_t>(a)], sb = score[static_cast<std::size_t>(b)];
            return sa < sb || (!(sb < sa) && a < b);
        };
        auto& cand = scratch_.cand;
        cand.clear();
        detail::append_zero(flag.data(), size, cand);
        if (static_cast<index>(cand.size()) < q)
            detail::fail("psap::pruner: group '", net.groups()[g].name, "' has ", cand.size(), " candidates for ", q,
                         " pruned channels; the protector shielded too many (restored + shielded must be <= size - q)");
        if (q > 0 && q < static_cast<index>(cand.size())) std::nth_element(cand.begin(), cand.begin() + (q - 1), cand.end(), below);
        for (index k = 0; k < q; ++k) flag[static_cast<std::size_t>(cand[static_cast<std::size_t>(k)])] = now_bit;
        if (!shielded.empty()) {
            // The unshielded selection's q lowest lie within the q selected (S)
            // and the shielded (H): any other candidate ranks above all of S.
            // So they are the q lowest of S and H, found in O(q + |H|) (a rank
            // per shielded channel was O(|H| (q + |H|)): quadratic in wide layers).
            index eff = 0;
            if (q > 0) {
                auto& both = scratch_.ranked;
                both.assign(cand.begin(), cand.begin() + q);
                both.insert(both.end(), shielded.begin(), shielded.end());
                std::nth_element(both.begin(), both.begin() + (q - 1), both.end(), below);
                for (index k = 0; k < q; ++k) eff += flag[static_cast<std::size_t>(both[static_cast<std::size_t>(k)])] == shield_bit;
            }
            entry.groups.resize(groups_.size());
            entry.groups[g].protected_effective = eff;
        }
        // The four lists from masks of 64 channels (detail::bits_where): a
        // listed channel costs one step, an unlisted one nothing, and no
        // branch depends on a channel's flags.
        auto &pr = u.pruned, &np = u.newly_pruned, &rs = u.restored, &rl = u.released;
        pr.clear(), np.clear(), rs.clear(), rl.clear();
        for (std::size_t c0 = 0; c0 < size; c0 += 64) {
            const std::size_t len = std::min<std::size_t>(64, size - c0);
            const auto base = static_cast<index>(c0);
            const std::uint64_t is = detail::bits_where(flag.data() + c0, len, now_bit),
                                back = detail::bits_where(flag.data() + c0, len, restored_bit),
                                was = detail::bits_where(st.pruned.data() + c0, len, 0xff);
            detail::append_bits(is, base, pr);
            detail::append_bits(is & ~was, base, np);
            detail::append_bits(back, base, rs);
            detail::append_bits(was & ~(is | back), base, rl);
        }
    }

    void load_state_json(const Net& net, const nlohmann::json& j) {
        steps_ = j.at("steps").get<index>();
        iteration_ = j.at("iteration").get<index>();
        since_step_ = j.at("since_step").get<index>();
        if (steps_ < 0 || iteration_ < 0 || since_step_ < 0)
            detail::fail("psap::pruner::load_state: negative step or iteration counters; the state blob is corrupt");
        reduced_ = false;
        for (std::size_t g = 0; g < groups_.size(); ++g) {
            const auto& jg = j.at("groups").at(g);
            const auto& bytes = jg.at("pruned").get_binary();
            const auto& name = net.groups()[g].name;
            if (bytes.size() != groups_[g].pruned.size())
                detail::fail("psap::pruner::load_state: group '", name, "' has ", groups_[g].pruned.size(), " channels, the state has ",
                             bytes.size());
            for (auto b : bytes)
                if (b > 1)
                    detail::fail("psap::pruner::load_state: the mask of group '", name, "' holds the value ", int(b),
                                 "; the state blob is corrupt");
            groups_[g].pruned.assign(bytes.begin(), bytes.end());
            groups_[g].ratio = jg.at("ratio").get<double>();
            groups_[g].budget = jg.at("budget").get<double>();
            if (!(groups_[g].ratio >= 0 && groups_[g].ratio < 1) || !(groups_[g].budget >= 0 && groups_[g].budget < 1))
                detail::fail("psap::pruner::load_state: group '", name, "' has ratio ", groups_[g].ratio, " and budget ",
                             groups_[g].budget, " outside [0, 1); the state blob is corrupt");
        }
        load_policy(j.at("schedule"), schedule_);
        load_policy(j.at("criterion"), criterion_);
        load_policy(j.at("protect"), protect_);
        load_policy(j.at("reconstruct"), reconstruct_);
        load_snapshots(j.at("snapshots"));
        log_ = j.at("log").get<std::vector<step_log>>();
    }

    void check_scores(const Net& net, const std::vector<std::vector<double>>& scores) const {
        for (std::size_t g = 0; g < scores.size(); ++g) {
            // one branch-free pass per group; the loop below only names the bad score
            if (cpu_detail::short_finite(scores[g].data(), static_cast<index>(scores[g].size()))) continue;
            for (std::size_t c = 0; c < scores[g].size(); ++c)
                if (!std::isfinite(scores[g][c])) {
                    // a non-finite weight is the likely cause: name its layer and filter
                    if (options_.check_finite) check_weights(net, false);
                    detail::fail("psap::pruner: the criterion scored channel ", c, " of group '", net.groups()[g].name, "' as ",
                                 scores[g][c], "; check the weights and gradients of the group's layers for NaN/Inf");
                }
        }
    }

    /// Every layer's weights and BN gamma/beta, scanned in one batched call
    /// each; the first bad layer in layer order is reported. skip_scored:
    /// leave out the weights of layers whose filters are all scored. A
    /// partial scan that finds a bad value rescans everything, so that which
    /// layer is named does not depend on what was left out.
    void check_weights(const Net& net, bool skip_scored) const {
        using B = backend_t<typename Net::memory_type>;
        using W = matrix_view<typename Net::value_type, typename Net::memory_type>;
        using V = vector_view<typename Net::value_type, typename Net::memory_type>;
        auto& ws = scratch_.weights;
        auto& vs = scratch_.vectors;
        auto &wr = scratch_.weight_rows, &vr = scratch_.vector_rows;
        ws.clear(), vs.clear();
        const auto checked = [&](std::size_t i) {
            return net.layers()[i].has_weight() && !(skip_scored && scored_[i]);
        };
        for (std::size_t i = 0; i < net.layers().size(); ++i) {
            const auto& l = net.layers()[i];
            if (checked(i)) ws.push_back(l.weight);
            if (l.bn) vs.push_back(l.bn->gamma), vs.push_back(l.bn->beta);
        }
        wr.resize(ws.size()), vr.resize(vs.size());
        B::first_nonfinite_rows(std::span<const W>(ws), std::span<index>(wr));
        B::first_nonfinite_batch(std::span<const V>(vs), std::span<index>(vr));
        std::size_t w = 0, v = 0;
        for (std::size_t i = 0; i < net.layers().size(); ++i) {
            const auto& l = net.layers()[i];
            if (checked(i)) {
                const index r = wr[w++];
                if (r >= 0) {
                    if (skip_scored) check_weights(net, false);
                    fail_weight(l, r);
                }
            }
            if (l.bn)
                for (const char* what : {"gamma", "beta"}) {
                    const index i = vr[v++];
                    if (i < 0) continue;
                    if (skip_scored) check_weights(net, false);
                    detail::fail("psap: layer '", l.name, "' has a NaN or Inf batch-norm ", what, " at channel ", i, "; training diverged");
                }
        }
    }

    template <class L>
    [[noreturn]] static void fail_weight(const L& l, index filter) {
        detail::fail("psap: layer '", l.name, "' has a NaN or Inf weight in filter ", filter,
                     "; training diverged (lower the learning rate) or the weights were not initialised");
    }

    /// list[k] = x, appended when k is the list's end, written only when it
    /// differs (views: same data and shape; other values: ==).
    template <class X>
    static void put_if_changed(std::vector<X>& list, std::size_t k, const std::type_identity_t<X>& x) {
        if (k == list.size()) {
            list.push_back(x);
            return;
        }
        const X& y = list[k];
        bool same;
        if constexpr (requires { x.rows(); })
            same = x.data() == y.data() && x.rows() == y.rows() && x.cols() == y.cols() && x.row_stride() == y.row_stride() &&
                   x.col_stride() == y.col_stride();
        else if constexpr (requires { x.stride(); })
            same = x.data() == y.data() && x.size() == y.size() && x.stride() == y.stride();
        else
            same = x == y;
        if (!same) list[k] = x;
    }

    /// Threads for decide_beside_scan: 1 (do not use it) without OpenMP, on
    /// device memory, inside a parallel region, or when the unscored weights
    /// are too few to repay a parallel region (cpu_threading's threshold).
    int team_beside_scan() const noexcept {
        if constexpr (!std::is_same_v<typename Net::memory_type, host_memory>)
            return 1;
        else
            return unscored_work_ > 0 ? cpu_threading::team_for(unscored_work_) : 1;
    }

    /// One parallel region for the step. This thread checks the network's
    /// structure, then runs setup() and decide() (restores, scores, plan,
    /// selection) and writes the log entry (summarise(): the decisions
    /// alone) while the rest of the team lists the scan's pieces, runs the
    /// schedule's prepare() once the structure is checked (unless decide()
    /// needs it first and runs it itself), and scans every BN gamma and beta
    /// and the weights of the layers that no score covers, cut into row
    /// chunks taken in turn; the helpers take part in every batched backend
    /// call decide() makes (the criterion's norm pass:
    /// cpu_detail::shared_work), and this thread joins the scan when it is
    /// done. The scan fills the helpers' time around the leader's serial
    /// bookkeeping. A changed structure fails first, as before any scan.
    /// Nothing is applied yet, so a bad value found here fails the step as
    /// the up-front scan did, and takes precedence over an error thrown by
    /// decide() (the up-front scan would have come first); a full rescan
    /// then names the first bad layer in layer order, whichever thread
    /// found it.
    template <class Setup, class Decide, class Prepare, class Summarise>
    void decide_beside_scan(const Net& net, Setup& setup, Decide& decide, [[maybe_unused]] int team,
                            [[maybe_unused]] cpu_detail::side_task& prepared, [[maybe_unused]] Prepare& prepare,
                            Summarise& summarise) {
        using B = backend_t<typename Net::memory_type>;
        using W = matrix_view<typename Net::value_type, typename Net::memory_type>;
        // ~64 KB of floats per chunk: fine enough to balance against decide(),
        // coarse enough that taking one costs nothing next to scanning it.
        constexpr index chunk_elements = index{1} << 14;
        // Lists of their own: decide() and the rescan below use the others.
        // An entry is written only when it changed: the other threads read
        // these lists, and rewriting a cache line they hold costs a transfer
        // per line when the two threads are on different cores (~2 us per
        // step on the project's machine in its slow mode).
        // Built by a helper as its first task (the structure is not checked
        // yet: a layer beyond scored_ counts as unscored).
        using V = vector_view<typename Net::value_type, typename Net::memory_type>;
        auto& chunks = scratch_.chunks;
        auto& at = scratch_.chunk_at;
        auto& found = scratch_.chunk_found;
        auto& vs = scratch_.chunk_vectors;
        auto& vr = scratch_.chunk_vector_rows;
        const auto list = [&] {
            std::size_t n_chunks = 0;
            for (std::size_t i = 0; i < net.layers().size(); ++i) {
                const auto& w = net.layers()[i].weight;
                if (!net.layers()[i].has_weight() || (i < scored_.size() && scored_[i])) continue;
                const index per = std::max<index>(1, chunk_elements / std::max<index>(1, w.cols()));
                for (index r = 0; r < w.rows(); r += per, ++n_chunks) {
                    put_if_changed(chunks, n_chunks, w.middle_rows(r, std::min(per, w.rows() - r)));
                    put_if_changed(at, n_chunks, {static_cast<index>(i), r});
                }
            }
            chunks.resize(n_chunks), at.resize(n_chunks);
            // Every chunk's and vector's entry is written by the scan below.
            found.resize(chunks.size());
            // Every BN gamma and beta as well: the first piece of the scan.
            std::size_t n_vectors = 0;
            for (const auto& l : net.layers())
                if (l.bn)
                    for (const V* v : {&l.bn->gamma, &l.bn->beta}) put_if_changed(vs, n_vectors++, *v);
            vs.resize(n_vectors);
            vr.resize(vs.size());
        };
        cpu_detail::side_task listed;
        std::atomic<std::size_t> next{0};
        [[maybe_unused]] std::atomic<bool> structure_ok{false};  // read only by the OpenMP region
        std::atomic<bool> stop{false};
        std::exception_ptr early, listing, failed;
        const auto scan_one = [&] {
            if (stop.load(std::memory_order_relaxed)) return false;
            const std::size_t k = next.fetch_add(1, std::memory_order_relaxed);
            if (k > chunks.size()) return false;
            if (k == 0)
                B::first_nonfinite_batch(std::span<const V>(vs), std::span<index>(vr));
            else
                B::first_nonfinite_rows(std::span<const W>(&chunks[k - 1], 1), std::span<index>(&found[k - 1], 1));
            return true;
        };
#if defined(_OPENMP)
        cpu_detail::shared_work work;
#pragma omp parallel num_threads(team)
        {
            if (omp_get_thread_num() == 0) {
                try {
                    check_structure(net);
                    structure_ok.store(true, std::memory_order_release);
                } catch (...) {
                    early = std::current_exception();
                    stop.store(true, std::memory_order_relaxed);
                }
                if (!early) {
                    const cpu_detail::leading lead(work);
                    try {
                        setup();
                        decide();
                    } catch (...) {
                        failed = std::current_exception();
                    }
                }
                work.retire();
                if (!early && !failed) {
                    try {
                        summarise();
                    } catch (...) {
                        failed = std::current_exception();
                    }
                }
                try {
                    listed.run_or_wait(list);
                    while (scan_one()) {}
                } catch (...) {
                    listing = std::current_exception();
                }
            } else {
                bool listed_here = true;
                try {
                    listed.run_or_wait(list);
                } catch (...) {
                    listed_here = false;  // the leader rethrows it from its own run_or_wait
                }
                if (listed_here)
                    work.help([&] { return (structure_ok.load(std::memory_order_acquire) && prepared.try_run(prepare)) || scan_one(); });
            }
        }
#else
        check_structure(net);  // not reached: without OpenMP the team is 1
        setup();
        decide();
        summarise();
        list();
        while (scan_one()) {}
#endif
        if (early) std::rethrow_exception(early);
        if (listing) std::rethrow_exception(listing);
        // A full rescan names the first bad layer in layer order, as the up-front scan does.
        for (index r : vr)
            if (r >= 0) check_weights(net, false);
        for (std::size_t k = 0; k < chunks.size(); ++k)
            if (found[k] >= 0) {
                check_weights(net, false);
                fail_weight(net.layers()[static_cast<std::size_t>(at[k].layer)], at[k].row + found[k]);
            }
        if (failed) std::rethrow_exception(failed);
    }

    /// The gradients of every member layer (each layer once, in group order),
    /// scanned in one batched call per kind.
    void check_gradients(const Net& net) const {
        using B = backend_t<typename Net::memory_type>;
        using W = matrix_view<typename Net::value_type, typename Net::memory_type>;
        using V = vector_view<typename Net::value_type, typename Net::memory_type>;
        const auto& order = member_layers_;
        auto& ws = scratch_.weights;
        auto& vs = scratch_.vectors;
        ws.clear(), vs.clear();
        for (index li : order) {
            const auto& l = net.layers()[static_cast<std::size_t>(li)];
            if (l.bn) {
                for (const auto* v : {&l.bn->grad_gamma, &l.bn->grad_beta, &l.bn->gate_grad})
                    if (!v->empty()) vs.push_back(*v);
            } else if (!l.grad.empty()) {
                ws.push_back(l.grad);
            }
        }
        auto &wr = scratch_.weight_rows, &vr = scratch_.vector_rows;
        wr.resize(ws.size()), vr.resize(vs.size());
        B::first_nonfinite_rows(std::span<const W>(ws), std::span<index>(wr));
        B::first_nonfinite_batch(std::span<const V>(vs), std::span<index>(vr));
        std::size_t w = 0, v = 0;
        for (index li : order) {
            const auto& l = net.layers()[static_cast<std::size_t>(li)];
            if (l.bn) {
                for (const auto* x : {&l.bn->grad_gamma, &l.bn->grad_beta, &l.bn->gate_grad}) {
                    const index i = x->empty() ? -1 : vr[v++];
                    if (i >= 0)
                        detail::fail("psap: layer '", l.name, "' has a NaN or Inf batch-norm gradient at channel ", i,
                                     "; the loss diverged (lower the learning rate, check the data)");
                }
            } else if (!l.grad.empty()) {
                const index r = wr[w++];
                if (r >= 0)
                    detail::fail("psap: layer '", l.name, "' has a NaN or Inf gradient in filter ", r,
                                 "; the loss diverged (lower the learning rate, check the data)");
            }
        }
    }

    template <class P>
    static void save_policy(nlohmann::json& j, const P& p) {
        j = nlohmann::json::object();
        if constexpr (requires { p.save(j); }) p.save(j);
    }
    template <class P>
    static void load_policy(const nlohmann::json& j, P& p) {
        if (!j.is_object()) detail::fail("psap::pruner::load_state: a policy's state is ", j.type_name(), ", not an object; the state blob is corrupt");
        if constexpr (requires { p.load(j); }) p.load(j);
    }

    nlohmann::json save_snapshots() const {
        nlohmann::json arr = nlohmann::json::array();
        const_cast<snapshot_store<Net>&>(snapshots_).visit_buffers([&](const auto& buf) { arr.push_back(to_binary(buf)); });
        return arr;
    }
    void load_snapshots(const nlohmann::json& arr) {
        std::size_t i = 0;
        snapshots_.visit_buffers([&](auto& buf) {
            if (i >= arr.size()) detail::fail("psap::pruner::load_state: the state holds fewer snapshot buffers than the network needs");
            from_binary(arr[i++].get_binary(), buf);
        });
        if (i != arr.size()) detail::fail("psap::pruner::load_state: the state holds more snapshot buffers than the network needs");
    }
    template <class Buf>
    static nlohmann::json to_binary(const Buf& buf) {
        using V = typename Buf::value_type;
        std::vector<std::uint8_t> bytes(buf.size() * sizeof(V));
        if constexpr (requires { backend_t<typename Net::memory_type>::to_host(buf, bytes.data()); })
            backend_t<typename Net::memory_type>::to_host(buf, bytes.data());
        else if (!bytes.empty())
            std::memcpy(bytes.data(), buf.data(), bytes.size());
        return nlohmann::json::binary(std::move(bytes));
    }
    template <class Buf>
    static void from_binary(const std::vector<std::uint8_t>& bytes, Buf& buf) {
        using V = typename Buf::value_type;
        if (bytes.size() != buf.size() * sizeof(V))
            detail::fail("psap::pruner::load_state: a snapshot buffer holds ", bytes.size(), " bytes, the network needs ",
                         buf.size() * sizeof(V));
        if constexpr (requires { backend_t<typename Net::memory_type>::from_host(bytes.data(), buf); })
            backend_t<typename Net::memory_type>::from_host(bytes.data(), buf);
        else if (!bytes.empty())
            std::memcpy(buf.data(), bytes.data(), bytes.size());
    }

    pruner_options options_{};
    Schedule schedule_{};
    Criterion criterion_{};
    Protect protect_{};
    Reconstruct reconstruct_{};
    cost_model costs_{};
    std::uint64_t fingerprint_ = 0;
    std::vector<index> structure_;      ///< visit_structure() at bind
    std::size_t membership_size_ = 0;   ///< its first values: visit_membership()
    /// Per-step working memory (no state: contents are rebuilt by each step).
    struct step_scratch {
        std::vector<std::vector<index>> restored, shielded;
        std::vector<std::vector<double>> scores;
        std::vector<std::uint8_t> flags;
        std::vector<index> cand, kept, ranked;
        std::vector<group_update> updates;
        schedule_plan plan;
        std::vector<matrix_view<typename Net::value_type, typename Net::memory_type>> weights;
        std::vector<vector_view<typename Net::value_type, typename Net::memory_type>> vectors;
        std::vector<index> weight_rows, vector_rows;
        // decide_beside_scan: the row chunks, where each starts, the first bad row in each, and the BN vectors
        std::vector<matrix_view<typename Net::value_type, typename Net::memory_type>> chunks;
        struct chunk_origin {
            index layer, row;
            bool operator==(const chunk_origin&) const = default;
        };
        std::vector<chunk_origin> chunk_at;
        std::vector<index> chunk_found;
        std::vector<vector_view<typename Net::value_type, typename Net::memory_type>> chunk_vectors;  // every BN gamma and beta
        std::vector<index> chunk_vector_rows;
    };
    mutable step_scratch scratch_;
    std::vector<std::uint8_t> scored_;  ///< per layer: every filter is a group member
    std::vector<index> member_layers_;  ///< layers with a group member, first occurrence in (group, member) order
    index unscored_work_ = 0;           ///< elements of the weights no score covers
    std::vector<group_state> groups_;
    snapshot_store<Net> snapshots_;
    std::vector<step_log> log_;
    all_reduce_fn reduce_;
    index steps_ = 0, iteration_ = 0, since_step_ = 0;
    bool bound_ = false;
    bool reduced_ = false;  ///< the statistics were merged by reduce_ since the last observe() or step
};

}  // namespace psap
