// A custom protector (docs/protectors.md): whatever the criterion says, the
// `keep` strongest active channels of every group (by |gamma|, or by filter
// norm without batch norm) are not pruning candidates. It restores nothing.
// Checked with random scores: the shielded channels are never pruned.
#include <psap/psap.hpp>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <vector>

// [custom-protector]
struct keep_strongest {
    psap::index keep = 2;

    static constexpr const char* name = "keep_strongest";
    template <class V>
    void fields(V&& v) {
        v("keep", keep);
    }

    template <class Net>
    void restores(const Net&, const psap::step_context&, std::span<std::vector<psap::index>>) const {}

    template <class Net>
    void shield(const Net& net, const psap::step_context& ctx, std::span<const psap::index> counts,
                std::span<std::vector<psap::index>> out) const {
        for (std::size_t g = 0; g < out.size(); ++g) {
            const auto& pruned = ctx.groups[g].pruned;  // the mask before this step
            const std::vector<double> m = psap::measure::channel_magnitude(net, static_cast<psap::index>(g));
            std::vector<psap::index> active;
            for (std::size_t i = 0; i < m.size(); ++i)
                if (!pruned[i]) active.push_back(static_cast<psap::index>(i));
            std::stable_sort(active.begin(), active.end(), [&](psap::index a, psap::index b) { return m[a] > m[b]; });
            // Leave enough candidates for this step's count q_g (restored + shielded <= size - q_g).
            const psap::index room = static_cast<psap::index>(pruned.size()) - counts[g] -
                                     (ctx.restored.empty() ? 0 : static_cast<psap::index>(ctx.restored[g].size()));
            active.resize(static_cast<std::size_t>(std::clamp<psap::index>(std::min<psap::index>(keep, room), 0, psap::index(active.size()))));
            out[g] = std::move(active);
        }
    }
};
static_assert(psap::protector_for<keep_strongest, psap::network<float>>);
// [custom-protector]

int main() {
    std::vector<float> w(16 * 9), gamma(16), beta(16);
    for (int i = 0; i < 16; ++i) gamma[i] = 0.1f * float((i * 7) % 16 + 1);  // strongest: i = 9 (1.6) and i = 2 (1.5)
    std::fill(w.begin(), w.end(), 1.f);
    psap::network<float> net;
    const auto c = net.add_layer({.name = "conv", .out_channels = 16, .in_channels = 1, .kernel_area = 9,
                                  .weight = psap::filters(w.data(), 16, 9),
                                  .bn = psap::batch_norm_views<float>{.gamma = psap::channels(gamma.data(), 16),
                                                                      .beta = psap::channels(beta.data(), 16)}});
    net.add_group("conv", 16).member(c);

    // [use-protector]
    psap::pruner<psap::uniform, psap::random_score, keep_strongest, psap::soft> p(
        {{psap::budget_kind::filters, 0.5}, 10}, psap::uniform{}, psap::random_score{.seed = 1, .resample_each_step = true},
        keep_strongest{.keep = 2});
    // [use-protector]
    int failures = 0;
    for (int step = 0; step < 10; ++step) {
        const auto& s = p.step(net, step);
        if (p.groups()[0].pruned[9] || p.groups()[0].pruned[2]) std::printf("FAIL: a shielded channel was pruned\n"), ++failures;
        if (s.groups[0].protected_count != 2) std::printf("FAIL: %lld channels shielded\n", (long long)s.groups[0].protected_count), ++failures;
    }
    std::printf(failures ? "protectors: %d check(s) failed\n" : "protectors: all checks passed\n", failures);
    return failures ? 1 : 0;
}
