// Checkpoint and resume (docs/integration.md, "Checkpoint and resume"): a run
// interrupted in the middle of an epoch and resumed from the model's own
// checkpoint plus the pruner's state() takes exactly the decisions of the
// uninterrupted run. Exits non-zero if any decision, weight or log differs.
#include "toy_model.hpp"

#include <psap/psap.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace {

constexpr int epochs = 6, iters = 12, batch_size = 16;
constexpr std::uint64_t seed = 3;

auto make() { return psap::presets::psap({psap::budget_kind::flops, 0.5}, epochs); }
using pruner_t = decltype(make());

/// Global iterations [from, to) of the training loop; a pruning point after
/// the last iteration of every epoch (and one at t = 0).
void train(toy::model& m, psap::network<float>& net, pruner_t& pruner, int from, int to) {
    if (from == 0) pruner.step(net, 0);
    for (int t = from; t < to; ++t) {
        m.forward_backward(toy::make_batch(seed, std::uint64_t(t), batch_size));
        pruner.observe(net);
        m.sgd(0.05f, 0.9f, 5e-4f);
        pruner.after_update(net);
        if ((t + 1) % iters == 0) pruner.step(net, (t + 1) / iters);
    }
}

}  // namespace

int main() {
    const int total = epochs * iters, stop = 2 * iters + 5;  // interrupt in the middle of epoch 3
    const auto path = (std::filesystem::temp_directory_path() / "psap_doc_checkpoint.state").string();

    // The uninterrupted run.
    toy::model ma(16, 16, seed);
    psap::network<float> net_a = toy::describe(ma);
    auto a = make();
    train(ma, net_a, a, 0, total);

    // The interrupted run: train to `stop`, then checkpoint.
    toy::model mb(16, 16, seed);
    psap::network<float> net_b = toy::describe(mb);
    auto b = make();
    train(mb, net_b, b, 0, stop);
    {
        // [save]
        // With the model's checkpoint (weights, BN statistics, optimizer
        // state), save the pruner's state: masks, snapshots of pruned
        // channels, accumulated statistics, counters and the decision log.
        const std::vector<std::uint8_t> blob = b.state();
        std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(blob.data()), std::streamsize(blob.size()));
        // [save]
    }
    const toy::model saved_model = mb;  // stands in for the framework's own checkpoint

    // A new process: restore the model, describe it, rebuild the pruner with
    // the same configuration, load its state, continue.
    toy::model mc = saved_model;
    psap::network<float> net = toy::describe(mc);  // views into the restored storage
    // [resume]
    auto pruner = psap::presets::psap({psap::budget_kind::flops, 0.5}, epochs);  // same configuration as before
    std::ifstream in(path, std::ios::binary);
    const std::vector<std::uint8_t> blob{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    pruner.load_state(net, blob);  // rejects a state saved from another network structure
    // [resume]
    train(mc, net, pruner, stop, total);
    std::filesystem::remove(path);

    const bool same_log = nlohmann::json(a.log()) == nlohmann::json(pruner.log());
    const bool same_keep = a.finalize(net_a).to_json() == pruner.finalize(net).to_json();
    const bool same_weights = ma.c1.w == mc.c1.w && ma.c2.w == mc.c2.w && ma.c2.gamma == mc.c2.gamma && ma.fw == mc.fw;
    std::printf("steps %lld; resumed run: log %s, keep-lists %s, weights %s\n", static_cast<long long>(pruner.steps_taken()),
                same_log ? "identical" : "DIFFERENT", same_keep ? "identical" : "DIFFERENT",
                same_weights ? "identical" : "DIFFERENT");
    return same_log && same_keep && same_weights ? 0 : 1;
}
