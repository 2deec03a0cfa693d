// Custom criteria (docs/criteria.md): a stateless one (mean absolute weight,
// comparable across layers of different fan-in) and one that accumulates
// gradient statistics between steps, with everything a resumable,
// data-parallel run needs. Both go through the backend of the network's
// memory space, so they run on CPU and GPU views alike.
#include <psap/psap.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

// [custom-criterion]
/// score_i = sum over members of mean_j |F_mi(j)|: the L1 norm divided by the
/// fan-in (Distiller's ranking), so layers of different fan-in compare.
struct mean_abs {
    static constexpr const char* name = "mean_abs";
    template <class V>
    void fields(V&&) {}

    template <class Net>
    void score(const Net& net, const psap::step_context&, std::span<std::vector<double>> scores) const {
        using B = psap::backend_t<typename Net::memory_type>;  // CPU or CUDA, by the views' tag
        for (std::size_t g = 0; g < scores.size(); ++g) {
            std::vector<double> sums(scores[g].size());
            for (std::size_t m = 0; m < net.groups()[g].members.size(); ++m) {
                const auto member = psap::member_of(net, static_cast<psap::index>(g), m);  // its rows of the group
                B::row_abs_sums(member.weight, sums);
                for (std::size_t i = 0; i < sums.size(); ++i) scores[g][i] += sums[i] / double(member.weight.cols());
            }
        }
    }
};
static_assert(psap::criterion_for<mean_abs, psap::network<float>>);
// [custom-criterion]

// [stateful-criterion]
/// score_i = mean over the iterations since the last step of
/// sum over members of ||dL/dF_mi||^2: how much the channel is still learning.
struct grad_energy {
    static constexpr const char* name = "grad_energy";
    template <class V>
    void fields(V&&) {}

    template <class Net>
    void bind(const Net& net) {  // per-network state is sized here, not in a constructor
        sum_.assign(net.groups().size(), {});
        for (std::size_t g = 0; g < sum_.size(); ++g) sum_[g].assign(static_cast<std::size_t>(net.groups()[g].size), 0.0);
        count_ = 0;
    }
    template <class Net>
    void observe(const Net& net, const psap::observe_context<Net>&) {
        using B = psap::backend_t<typename Net::memory_type>;
        for (std::size_t g = 0; g < sum_.size(); ++g) {
            std::vector<double> sq(sum_[g].size());
            for (std::size_t m = 0; m < net.groups()[g].members.size(); ++m) {
                B::row_sq_norms(psap::member_of(net, static_cast<psap::index>(g), m).grad, sq);
                for (std::size_t i = 0; i < sq.size(); ++i) sum_[g][i] += sq[i];
            }
        }
        count_ += 1;
    }
    template <class Net>
    void score(const Net&, const psap::step_context&, std::span<std::vector<double>> scores) const {
        if (count_ == 0) return;  // nothing observed yet: all zero, ties break by index
        for (std::size_t g = 0; g < scores.size(); ++g)
            for (std::size_t i = 0; i < scores[g].size(); ++i) scores[g][i] = sum_[g][i] / count_;
    }
    void after_step() {  // start afresh after every step
        for (auto& s : sum_) std::fill(s.begin(), s.end(), 0.0);
        count_ = 0;
    }
    void reduce(const psap::all_reduce_fn& all_reduce) {  // sum over data-parallel workers
        for (auto& s : sum_) all_reduce(s);
        all_reduce(std::span<double>(&count_, 1));
    }
    void save(nlohmann::json& j) const { j = {{"sum", sum_}, {"count", count_}}; }
    void load(const nlohmann::json& j) {  // runs after bind(): the shapes must match
        auto sum = j.at("sum").get<std::vector<std::vector<double>>>();
        bool same = sum.size() == sum_.size();
        for (std::size_t g = 0; same && g < sum.size(); ++g) same = sum[g].size() == sum_[g].size();
        if (!same) throw psap::error("grad_energy: the saved statistics do not match the network's groups");
        sum_ = std::move(sum);
        count_ = j.at("count").get<double>();
    }

private:
    std::vector<std::vector<double>> sum_;
    double count_ = 0;
};
static_assert(psap::criterion_for<grad_energy, psap::network<float>>);
// [stateful-criterion]

int main() {
    int failures = 0;
    auto expect = [&](bool ok, const char* what) {
        if (!ok) std::printf("FAIL: %s\n", what), ++failures;
    };
    // Group of 4 channels over two members with fan-in 2 and 4.
    std::vector<float> wa{1, 1, 4, 4, 2, 2, 3, 3}, wb(16, 1.f), ga(8), gb(16);
    wb[0] = 10;  // channel 0 of member b: mean |w| = (10 + 3) / 4
    psap::network<float> net;
    const auto a = net.add_layer({.name = "a", .out_channels = 4, .in_channels = 2, .weight = psap::filters(wa.data(), 4, 2),
                                  .grad = psap::filters(ga.data(), 4, 2)});
    const auto b = net.add_layer({.name = "b", .out_channels = 4, .in_channels = 4, .weight = psap::filters(wb.data(), 4, 4),
                                  .grad = psap::filters(gb.data(), 4, 4)});
    net.add_group("ab", 4).member(a).member(b);

    // mean_abs by hand: channel i = mean|a_i| + mean|b_i| = {1+3.25, 4+1, 2+1, 3+1}: channel 2 goes first, then 3.
    // A filters budget counts both members' filters: 2 of 4 channels = 4 of 8 filters.
    psap::pruner<psap::uniform, mean_abs, psap::no_protection, psap::hard> p({{psap::budget_kind::filters, 0.5}, 1});
    const auto& s = p.step(net, 1);
    expect(s.groups[0].pruned == 2 && p.groups()[0].pruned[2] && p.groups()[0].pruned[3], "mean_abs pruned channels 2 and 3");

    // grad_energy: channel 1 gets the smallest gradients, so it goes first.
    std::vector<float> wa2(8, 1.f), wb2(16, 1.f);
    psap::network<float> net2;
    const auto a2 = net2.add_layer({.name = "a", .out_channels = 4, .in_channels = 2, .weight = psap::filters(wa2.data(), 4, 2),
                                    .grad = psap::filters(ga.data(), 4, 2)});
    const auto b2 = net2.add_layer({.name = "b", .out_channels = 4, .in_channels = 4, .weight = psap::filters(wb2.data(), 4, 4),
                                    .grad = psap::filters(gb.data(), 4, 4)});
    net2.add_group("ab", 4).member(a2).member(b2);
    psap::pruner<psap::uniform, grad_energy, psap::no_protection, psap::soft> q({{psap::budget_kind::filters, 0.25}, 2});
    std::mt19937 rng(1);
    std::normal_distribution<float> noise(0.f, 1.f);
    for (int it = 0; it < 10; ++it) {
        for (auto& x : ga) x = noise(rng);
        for (auto& x : gb) x = noise(rng);
        for (int j = 0; j < 2; ++j) ga[2 + j] *= 0.01f;  // channel 1's rows
        for (int j = 0; j < 4; ++j) gb[4 + j] *= 0.01f;
        q.observe(net2);
    }
    const auto blob = q.state();  // the accumulated statistics travel with the state
    decltype(q) r({{psap::budget_kind::filters, 0.25}, 2});
    r.load_state(net2, blob);
    r.step(net2, 1);
    expect(r.groups()[0].pruned_count() == 1 && r.groups()[0].pruned[1], "grad_energy pruned channel 1 after a resume");

    std::printf(failures ? "criteria: %d check(s) failed\n" : "criteria: all checks passed\n", failures);
    return failures ? 1 : 0;
}
