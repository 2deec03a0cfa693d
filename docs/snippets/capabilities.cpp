// Every capability a policy can have, one skeleton per family, with the exact
// signatures the pruner looks for (docs/schedules.md, criteria.md,
// protectors.md, reconstruction.md). The pruner detects the optional ones by
// their signature: a misspelt one is silently not called. So this program
// runs each skeleton through a static pruner and through make_pruner (the
// type-erased any_pruner) and fails unless every capability was called.
#include <psap/psap.hpp>

#include <cstdio>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>

namespace {

std::map<std::string, int> calls;
std::mutex calls_mutex;  // a schedule's prepare() may run on another thread than the other hooks
void seen(const char* policy, const char* function) {
    const std::lock_guard lock(calls_mutex);
    ++calls[std::string(policy) + "." + function];
}

// [schedule-skeleton]
struct my_schedule {
    static constexpr const char* name = "my_schedule";  // for make_pruner and logs
    double strength = 1;                                 // a hyper-parameter
    template <class V>
    void fields(V&& v) { v("strength", strength); seen(name, __func__); }  // JSON names of the hyper-parameters

    template <class Net>  // required: fill plan.ratio and plan.count (pre-sized, zero)
    void plan(const Net&, const psap::step_context&, psap::schedule_plan&) { seen(name, __func__); }

    template <class Net>  // before plan(), maybe on another thread: measure the network alone into your own members
    void prepare(const Net&, std::span<const psap::group_state>, psap::index) { seen(name, __func__); }
    template <class Net>
    void bind(const Net&) { seen(name, __func__); }                // size per-network state
    void save(nlohmann::json&) const { seen(name, __func__); }    // into state()
    void load(const nlohmann::json&) { seen(name, __func__); }    // from load_state()
};
// [schedule-skeleton]

// [criterion-skeleton]
struct my_criterion {
    static constexpr const char* name = "my_criterion";
    template <class V>
    void fields(V&&) { seen(name, __func__); }

    template <class Net>  // required: scores[g][i] for channel i of group g (pre-sized, zero)
    void score(const Net&, const psap::step_context&, std::span<std::vector<double>>) { seen(name, __func__); }

    template <class Net>
    void bind(const Net&) { seen(name, __func__); }
    template <class Net>  // after every backward pass, before the optimizer step
    void observe(const Net&, const psap::observe_context<Net>&) { seen(name, __func__); }
    void after_step() { seen(name, __func__); }                              // after every step()
    void after_failed_step() noexcept { seen(name, __func__); }             // a step() threw: drop what it left
    void reduce(const psap::all_reduce_fn&) { seen(name, __func__); }        // at step(), before score()
    void save(nlohmann::json&) const { seen(name, __func__); }
    void load(const nlohmann::json&) { seen(name, __func__); }
};
// [criterion-skeleton]

// [protector-skeleton]
struct my_protector {
    static constexpr const char* name = "my_protector";
    template <class V>
    void fields(V&&) { seen(name, __func__); }

    template <class Net>  // required: pruned channels to restore now, per group, strongest first
    void restores(const Net&, const psap::step_context&, std::span<std::vector<psap::index>>) { seen(name, __func__); }
    template <class Net>  // required: active channels that are not candidates, given this step's counts
    void shield(const Net&, const psap::step_context&, std::span<const psap::index>, std::span<std::vector<psap::index>>) {
        seen(name, __func__);
    }

    template <class Net>
    void bind(const Net&) { seen(name, __func__); }
    template <class Net>
    void observe(const Net&, const psap::observe_context<Net>&) { seen(name, __func__); }
    void after_step() { seen(name, __func__); }
    void after_failed_step() noexcept { seen(name, __func__); }
    void reduce(const psap::all_reduce_fn&) { seen(name, __func__); }
    psap::index pulses(std::size_t) const { seen(name, __func__); return 0; }  // the log's "pulses" of group g
    void save(nlohmann::json&) const { seen(name, __func__); }
    void load(const nlohmann::json&) { seen(name, __func__); }
};
// [protector-skeleton]

// [reconstructor-skeleton]
struct my_reconstructor {
    static constexpr const char* name = "my_reconstructor";
    template <class V>
    void fields(V&&) { seen(name, __func__); }

    template <class Net>  // required: make the weights match this step's masks
    void apply(const Net&, const psap::step_context&, std::span<const psap::group_update>, psap::snapshot_store<Net>&) {
        seen(name, __func__);
    }
    template <class Net>  // required: after every optimizer step
    void after_update(const Net&, std::span<const psap::group_state>, psap::snapshot_store<Net>&) { seen(name, __func__); }

    template <class Net>
    void bind(const Net&) { seen(name, __func__); }
    template <class Net>  // in observe(), after the criterion and the protector
    void mask_gradients_of(const Net&, std::span<const psap::group_state>) { seen(name, __func__); }
    template <class Net>  // in finalize(), before the keep-lists are read
    void finish(const Net&, std::span<const psap::group_state>, psap::snapshot_store<Net>&) { seen(name, __func__); }
    void save(nlohmann::json&) const { seen(name, __func__); }
    void load(const nlohmann::json&) { seen(name, __func__); }
};
// [reconstructor-skeleton]

using net_t = psap::network<float>;
static_assert(psap::schedule_for<my_schedule, net_t>);
static_assert(psap::criterion_for<my_criterion, net_t>);
static_assert(psap::protector_for<my_protector, net_t>);
static_assert(psap::reconstructor_for<my_reconstructor, net_t>);

/// Drives every hook and every optional path once.
template <class Pruner>
void exercise(Pruner& p, net_t& net, float& weight) {
    p.set_all_reduce([](std::span<double>) {});
    p.step(net, 0);
    p.observe(net);
    p.after_update(net);
    const float w = std::exchange(weight, std::numeric_limits<float>::quiet_NaN());
    try {
        p.step(net, 1);  // fails: a NaN weight
    } catch (const psap::error&) {
    }
    weight = w;
    p.step(net, 1);
    const auto blob = p.state();
    p.load_state(net, blob);
    p.finalize(net);
}

int check(const char* how, const std::set<std::string>& skip) {
    int missing = 0;
    for (const char* policy : {"my_schedule", "my_criterion", "my_protector", "my_reconstructor"})
        for (const char* fn : {"fields", "plan", "prepare", "score", "restores", "shield", "apply", "after_update", "bind", "observe",
                               "after_step", "after_failed_step", "reduce", "pulses", "mask_gradients_of", "finish", "save", "load"}) {
            const std::string key = std::string(policy) + "." + fn;
            const bool has = (key.find("my_schedule.") == 0 && std::set<std::string>{"fields", "plan", "prepare", "bind", "save", "load"}.count(fn)) ||
                             (key.find("my_criterion.") == 0 && std::set<std::string>{"fields", "score", "bind", "observe", "after_step", "after_failed_step", "reduce", "save", "load"}.count(fn)) ||
                             (key.find("my_protector.") == 0 && std::set<std::string>{"fields", "restores", "shield", "bind", "observe", "after_step", "after_failed_step", "reduce", "pulses", "save", "load"}.count(fn)) ||
                             (key.find("my_reconstructor.") == 0 && std::set<std::string>{"fields", "apply", "after_update", "bind", "mask_gradients_of", "finish", "save", "load"}.count(fn));
            if (has && !skip.count(fn) && calls[key] == 0) std::printf("FAIL (%s): %s was never called\n", how, key.c_str()), ++missing;
        }
    return missing;
}

}  // namespace

int main() {
    std::vector<float> w(8 * 4, 1.f), g(w.size(), 0.f);
    net_t net;
    const auto a = net.add_layer({.name = "a", .out_channels = 8, .in_channels = 4, .weight = psap::filters(w.data(), 8, 4),
                                  .grad = psap::filters(g.data(), 8, 4)});
    net.add_group("a", 8).member(a);

    int failures = 0;
    {
        psap::pruner<my_schedule, my_criterion, my_protector, my_reconstructor> p({{psap::budget_kind::flops, 0.5}, 2});
        exercise(p, net, w[0]);
        failures += check("static pruner", {"fields"});  // a static pruner needs no configuration
    }
    calls.clear();
    {
        auto& registry = psap::policy_registry<>::instance();
        registry.add<my_schedule>();
        registry.add<my_criterion>();
        registry.add<my_protector>();
        registry.add<my_reconstructor>();
        auto p = psap::make_pruner(nlohmann::json{{"budget", 0.5}, {"total_epochs", 2}, {"schedule", {{"name", "my_schedule"}, {"strength", 2}}},
                                                  {"criterion", "my_criterion"}, {"protect", "my_protector"}, {"reconstruct", "my_reconstructor"}});
        exercise(p, net, w[0]);
        (void)psap::describe(p);
        failures += check("any_pruner", {});
    }
    std::printf(failures ? "capabilities: %d missing\n" : "capabilities: every capability was called\n", failures);
    return failures ? 1 : 0;
}
