// A custom schedule (docs/schedules.md): the budget rises in equal stairs,
// every group gets one common ratio, and the shared solver turns it into
// integer channel counts that meet the budget. Used from a static pruner and,
// once registered, from a JSON configuration.
#include <psap/psap.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

// [custom-schedule]
/// B_t = B * ceil(stairs * progress) / stairs, one ratio for all groups.
struct staircase {
    int stairs = 4;
    double p_max = 0.9;  // no group loses more than this ratio

    static constexpr const char* name = "staircase";
    template <class V>
    void fields(V&& v) {
        v("stairs", stairs);
        v("p_max", p_max);
    }

    template <class Net>
    void plan(const Net&, const psap::step_context& ctx, psap::schedule_plan& plan) const {
        const std::size_t n = ctx.costs.group_count();
        plan.budget_now = ctx.target.target * std::ceil(stairs * ctx.info.progress) / stairs;
        if (plan.budget_now <= 0) return;  // plan arrives sized and zero: prune nothing
        // The smallest common ratio p (d_g = 0 for every group, mu = p) whose
        // integer counts remove at least B_t of the budget's kind.
        const std::vector<double> zero(n, 0.0), lo(n, 0.0), hi(n, p_max);
        const psap::allocation a = psap::allocate(ctx.costs, ctx.target.kind, plan.budget_now, zero, lo, hi, ctx.keep_multiple);
        if (!a.feasible)
            psap::fail_budget(name, ctx.target.kind, plan.budget_now,
                              psap::achieved_reduction(ctx.costs, ctx.target.kind, a.count), p_max);
        plan.mu = a.mu;
        plan.ratio = a.ratio;
        plan.count = a.count;
    }
};
static_assert(psap::schedule_for<staircase, psap::network<float>>);
// [custom-schedule]

int main() {
    std::vector<float> w1(32 * 27, 1.f), w2(32 * 288, 1.f);
    for (std::size_t i = 0; i < w1.size(); ++i) w1[i] = float(i % 97) / 97.f;
    psap::network<float> net;
    const auto c1 = net.add_layer({.name = "c1", .out_channels = 32, .in_channels = 3, .kernel_area = 9, .out_positions = 64,
                                   .weight = psap::filters(w1.data(), 32, 27)});
    const auto c2 = net.add_layer({.name = "c2", .out_channels = 32, .in_channels = 32, .kernel_area = 9, .out_positions = 64,
                                   .weight = psap::filters(w2.data(), 32, 288)});
    net.add_group("c1", 32).member(c1).consumer(c2);

    int failures = 0;
    // [use-schedule]
    psap::pruner<staircase, psap::l2_norm, psap::no_protection, psap::hard> p({{psap::budget_kind::flops, 0.4}, 8},
                                                                               staircase{.stairs = 2});
    // [use-schedule]
    for (int epoch = 0; epoch <= 8; ++epoch) {
        const auto& s = p.step(net, epoch);
        const double expected = epoch == 0 ? 0.0 : epoch <= 4 ? 0.2 : 0.4;  // two stairs
        if (std::abs(s.budget_now - expected) > 1e-12 || s.reduction < expected)
            std::printf("FAIL: epoch %d budget %g (expected %g), reduction %g\n", epoch, s.budget_now, expected, s.reduction), ++failures;
    }

    // [register-schedule]
    psap::policy_registry<>::instance().add<staircase>();  // now "staircase" is a schedule name
    auto q = psap::make_pruner(nlohmann::json::parse(R"({
        "budget": 0.4, "total_epochs": 8,
        "schedule": {"name": "staircase", "stairs": 2},
        "criterion": "l2_norm", "protect": "none", "reconstruct": "hard"})"));
    // [register-schedule]
    std::vector<float> w1b(32 * 27), w2b(32 * 288, 1.f);
    for (std::size_t i = 0; i < w1b.size(); ++i) w1b[i] = float(i % 97) / 97.f;
    psap::network<float> net2;
    const auto d1 = net2.add_layer({.name = "c1", .out_channels = 32, .in_channels = 3, .kernel_area = 9, .out_positions = 64,
                                    .weight = psap::filters(w1b.data(), 32, 27)});
    const auto d2 = net2.add_layer({.name = "c2", .out_channels = 32, .in_channels = 32, .kernel_area = 9, .out_positions = 64,
                                    .weight = psap::filters(w2b.data(), 32, 288)});
    net2.add_group("c1", 32).member(d1).consumer(d2);
    for (int epoch = 0; epoch <= 8; ++epoch) q.step(net2, epoch);
    if (nlohmann::json(q.log()) != nlohmann::json(p.log())) std::printf("FAIL: the configured pruner decided differently\n"), ++failures;

    std::printf(failures ? "schedules: %d check(s) failed\n" : "schedules: all checks passed\n", failures);
    return failures ? 1 : 0;
}
