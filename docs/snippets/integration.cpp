// The integration guide's main example (docs/integration.md): the toy conv
// net of toy_model.hpp trained from scratch by its own hand-written loop and
// pruned with PSAP through the four hooks; then compacted from the keep-lists
// and checked: the compacted net gives the masked net's outputs.
// Exits non-zero when the loss does not fall or compaction is not exact.
#include "toy_model.hpp"

#include <psap/psap.hpp>

#include <cmath>
#include <cstdio>
#include <string_view>

namespace {

// [compaction]
/// The kept channels of group `name` (ascending).
const std::vector<psap::index>& kept_of(const psap::pruning_result& r, std::string_view name) {
    for (const auto& g : r.groups)
        if (g.group == name) return g.kept;
    throw std::runtime_error("no such group");
}

/// A physically smaller copy of `m`. Group "conv1" removes conv1's filters and
/// BN entries, and conv2's input channels (its consumer); group "conv2"
/// removes conv2's filters and BN entries, and fc's input columns.
toy::model compact(const toy::model& m, const psap::pruning_result& r) {
    const auto& k1 = kept_of(r, "conv1");
    const auto& k2 = kept_of(r, "conv2");
    const int n1 = int(k1.size()), n2 = int(k2.size());
    toy::model s(n1, n2, 0);
    auto copy_bn = [](const toy::conv_bn_relu& from, toy::conv_bn_relu& to, const std::vector<psap::index>& keep) {
        for (std::size_t j = 0; j < keep.size(); ++j) {
            to.gamma[j] = from.gamma[keep[j]], to.beta[j] = from.beta[keep[j]];
            to.mean[j] = from.mean[keep[j]], to.var[j] = from.var[keep[j]];
        }
    };
    for (int o = 0; o < n1; ++o)  // conv1: rows k1, its single input channel
        for (int t = 0; t < 9; ++t) s.c1.w[o * 9 + t] = m.c1.w[k1[o] * 9 + t];
    copy_bn(m.c1, s.c1, k1);
    for (int o = 0; o < n2; ++o)  // conv2: rows k2, input channels k1
        for (int i = 0; i < n1; ++i)
            for (int t = 0; t < 9; ++t) s.c2.w[(o * n1 + i) * 9 + t] = m.c2.w[(k2[o] * m.c2.cin + k1[i]) * 9 + t];
    copy_bn(m.c2, s.c2, k2);
    for (int k = 0; k < toy::classes; ++k) {  // fc: input columns k2, all outputs
        for (int i = 0; i < n2; ++i) s.fw[k * n2 + i] = m.fw[k * m.fin + k2[i]];
        s.fb[k] = m.fb[k];
    }
    return s;
}
// [compaction]

}  // namespace

int main() {
    constexpr int epochs = 10, iters = 20, batch_size = 32;
    constexpr std::uint64_t seed = 7;
    std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
    toy::model m(16, 16, seed);
    psap::network<float> net = toy::describe(m);
    const toy::batch test = toy::make_batch(seed + 1, 0, 512);

    // [make-pruner]
    // PSAP, removing half of the MACs by the end; `epochs` sets the progress
    // (epoch / epochs) that drives the budget ramp and the frozen final phase.
    auto pruner = psap::presets::psap({psap::budget_kind::flops, 0.5}, epochs);
    // [make-pruner]

    std::vector<double> losses;
    // [training-loop]
    pruner.step(net, 0);  // a pruning point before training: pruning from scratch
    for (int epoch = 1; epoch <= epochs; ++epoch) {
        double loss = 0;
        for (int it = 0; it < iters; ++it) {
            const toy::batch b = toy::make_batch(seed, std::uint64_t(epoch) * iters + it, batch_size);
            loss += m.forward_backward(b);  // backward: weight, BN and gate gradients
            pruner.observe(net);            // after backward, before the optimizer step
            m.sgd(0.05f, 0.9f, 5e-4f);      // the optimizer step
            pruner.after_update(net);       // after the optimizer step
        }
        const psap::step_log& s = pruner.step(net, epoch);  // end of epoch: a pruning point
        std::printf("epoch %2d  loss %.3f  test acc %5.1f%%  B_t %.3f  MACs -%4.1f%%  churn %lld  restored %lld%s\n", epoch,
                    loss / iters, 100 * m.accuracy(test), s.budget_now, 100 * s.reduction, static_cast<long long>(s.churn()),
                    static_cast<long long>(s.groups[0].restored + s.groups[1].restored), s.frozen ? "  frozen" : "");
        losses.push_back(loss / iters);
    }
    const psap::pruning_result result = pruner.finalize(net);
    std::printf("\n%s", result.table().c_str());
    // [training-loop]

    // The gated channels output exactly 0, so removing them changes nothing.
    toy::model small = compact(m, result);
    const auto full_logits = m.forward(test, false), small_logits = small.forward(test, false);
    float diff = 0;
    for (std::size_t i = 0; i < full_logits.size(); ++i) diff = std::max(diff, std::abs(full_logits[i] - small_logits[i]));
    std::printf("\ncompacted: conv1 %d, conv2 %d channels; test acc %.1f%% (masked %.1f%%); max |logit difference| %.2g\n",
                small.c1.cout, small.c2.cout, 100 * small.accuracy(test), 100 * m.accuracy(test), double(diff));

    const bool learned = losses.back() < 0.5 * losses.front();
    const bool exact = diff < 1e-4f;
    if (!learned) std::printf("FAIL: the loss did not fall (%.3f -> %.3f)\n", losses.front(), losses.back());
    if (!exact) std::printf("FAIL: the compacted model's outputs differ\n");
    return learned && exact ? 0 : 1;
}
