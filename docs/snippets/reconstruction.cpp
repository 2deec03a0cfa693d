// A custom reconstruction policy (docs/reconstruction.md): a pruned channel
// that feeds batch norm is gated (gamma = beta = 0) at each step but not held
// there, so training may regrow it (SFP's "soft" idea, applied at the gate
// instead of the filter); restored and released channels get their snapshot
// back; finalize() gates every pruned channel again so that compaction is
// exact. Channels without batch norm are zeroed instead.
#include <psap/psap.hpp>

#include <cstdio>
#include <vector>

// [custom-reconstruction]
struct soft_gate {
    static constexpr const char* name = "soft_gate";
    template <class V>
    void fields(V&&) {}

    template <class Net>
    void apply(const Net& net, const psap::step_context&, std::span<const psap::group_update> updates,
               psap::snapshot_store<Net>& snapshots) const {
        for (std::size_t g = 0; g < updates.size(); ++g) {
            const auto gi = static_cast<psap::index>(g);
            const psap::group_update& u = updates[g];
            snapshots.save(net, gi, u.newly_pruned);  // before touching them: restores need the values
            snapshots.restore(net, gi, u.restored);
            snapshots.restore(net, gi, u.released);
            gate(net, gi, u.pruned);
        }
    }

    template <class Net>  // soft: nothing holds the gates between steps
    void after_update(const Net&, std::span<const psap::group_state>, psap::snapshot_store<Net>&) const {}

    template <class Net>  // finalize(): every pruned channel outputs exactly 0 again
    void finish(const Net& net, std::span<const psap::group_state> groups, psap::snapshot_store<Net>&) const {
        for (std::size_t g = 0; g < groups.size(); ++g) {
            std::vector<psap::index> pruned;
            for (std::size_t i = 0; i < groups[g].pruned.size(); ++i)
                if (groups[g].pruned[i]) pruned.push_back(static_cast<psap::index>(i));
            gate(net, static_cast<psap::index>(g), pruned);
        }
    }

private:
    template <class Net>
    static void gate(const Net& net, psap::index g, std::span<const psap::index> channels) {
        using B = psap::backend_t<typename Net::memory_type>;  // writes through CPU or device views
        using T = typename Net::value_type;
        for (std::size_t m = 0; m < net.groups()[static_cast<std::size_t>(g)].members.size(); ++m) {
            const auto member = psap::member_of(net, g, m);
            if (member.bn) {
                B::set_entries(member.bn->gamma, channels, T(0));
                B::set_entries(member.bn->beta, channels, T(0));
            } else {
                B::zero_rows(member.weight, channels);
                if (!member.bias.empty()) B::set_entries(member.bias, channels, T(0));
            }
        }
    }
};
static_assert(psap::reconstructor_for<soft_gate, psap::network<float>>);
// [custom-reconstruction]

int main() {
    std::vector<float> w(8 * 9, 1.f), gamma(8), beta(8, 0.5f);
    for (int i = 0; i < 8; ++i) gamma[i] = 0.1f * float(i + 1);  // channels 0..3 are the weakest
    psap::network<float> net;
    const auto c = net.add_layer({.name = "conv", .out_channels = 8, .in_channels = 1, .kernel_area = 9,
                                  .weight = psap::filters(w.data(), 8, 9),
                                  .bn = psap::batch_norm_views<float>{.gamma = psap::channels(gamma.data(), 8),
                                                                      .beta = psap::channels(beta.data(), 8)}});
    net.add_group("conv", 8).member(c);

    int failures = 0;
    auto expect = [&](bool ok, const char* what) {
        if (!ok) std::printf("FAIL: %s\n", what), ++failures;
    };
    psap::pruner<psap::uniform, psap::bn_scale, psap::no_protection, soft_gate> p({{psap::budget_kind::filters, 0.5}, 4});
    p.step(net, 0);
    expect(gamma[0] == 0 && beta[3] == 0 && gamma[4] != 0, "channels 0..3 gated");
    gamma[1] = 2.f, beta[1] = 0.3f;  // "training" regrows gate 1: it is now the strongest
    p.after_update(net);
    expect(gamma[1] == 2.f, "after_update holds nothing");
    p.step(net, 1);  // channel 1 is released and gets its snapshot back; channel 4 goes
    expect(gamma[1] == 0.2f && beta[1] == 0.5f, "released channel restored from its snapshot");
    expect(gamma[4] == 0 && beta[4] == 0, "the next weakest channel gated");
    gamma[0] = 0.01f;  // a pruned gate drifted
    p.finalize(net);
    expect(gamma[0] == 0 && beta[0] == 0, "finish() gates every pruned channel");
    std::printf(failures ? "reconstruction: %d check(s) failed\n" : "reconstruction: all checks passed\n", failures);
    return failures ? 1 : 0;
}
