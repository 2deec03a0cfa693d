// The decision log and the final report (docs/integration.md, "Reading the
// decision log and the report"). Deterministic: PSAP steps on the toy model
// at its initial weights, with synthetic gate gradients in which one gated
// channel of conv2 pulses, so the log shows a restore.
//   report [log|step-json|table|csv]   prints the part shown in the docs
#include "toy_model.hpp"

#include <psap/psap.hpp>

#include <cmath>
#include <cstdio>
#include <string_view>

namespace {

/// Rounds every number of a JSON value to 4 decimals, stable across compilers:
/// ratios found by bisection sit within 1e-9 of a breakpoint k/N, so values
/// are nudged up by 1e-7 before rounding to keep them on one side of a tie.
nlohmann::json rounded(nlohmann::json j) {
    if (j.is_number_float()) return std::round(j.get<double>() * 1e4 + 1e-3) / 1e4;
    if (j.is_structured())
        for (auto& v : j) v = rounded(v);
    return j;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string_view part = argc > 1 ? argv[1] : "";
    toy::model m(16, 16, 7);
    psap::network<float> net = toy::describe(m);
    auto pruner = psap::presets::psap({psap::budget_kind::flops, 0.5}, 4);
    pruner.step(net, 0);
    for (int epoch = 1; epoch <= 4; ++epoch) {
        for (int it = 0; it < 5; ++it) {
            for (auto* c : {&m.c1, &m.c2})
                for (int i = 0; i < c->cout; ++i) c->gate[i] = c->ggamma[i] = 0.01f * float(1 + (i * 7) % 5);
            for (int i = 0; i < 16; ++i)  // the first gated channel of conv2 pulses
                if (pruner.groups()[1].pruned[i]) {
                    m.c2.gate[i] = 1.f;
                    break;
                }
            pruner.observe(net);
            pruner.after_update(net);
        }
        pruner.step(net, epoch);
    }

    if (part.empty() || part == "log") {
        // [read-log]
        for (const psap::step_log& s : pruner.log()) {
            std::printf("step %lld (epoch %g): B_t %.3f, removed %.3f of MACs, churn %lld%s\n", static_cast<long long>(s.step),
                        s.epoch, s.budget_now, s.reduction, static_cast<long long>(s.churn()), s.frozen ? ", frozen" : "");
            for (const psap::group_decision& d : s.groups)
                std::printf("  %-6s asked %lld, pruned %2lld/%lld  new %lld  restored %lld  pulses %lld  protected %lld\n",
                            d.group.c_str(), static_cast<long long>(d.target), static_cast<long long>(d.pruned), static_cast<long long>(d.size),
                            static_cast<long long>(d.newly_pruned), static_cast<long long>(d.restored),
                            static_cast<long long>(d.pulses), static_cast<long long>(d.protected_count));
        }
        // [read-log]
    }
    if (part == "step-json") {
        // [log-json]
        const nlohmann::json log = pruner.log();  // every step, as a JSON array
        // [log-json]
        std::printf("%s\n", rounded(log.at(2)).dump(2).c_str());
    }
    // [report]
    const psap::pruning_result result = pruner.finalize(net);
    const std::string table = result.table();        // for a terminal
    const nlohmann::json json = result.to_json();    // keep-lists, per-layer widths and costs
    const std::string csv = result.to_csv();         // one row per layer
    // [report]
    if (part == "table") std::printf("%s", table.c_str());
    if (part == "csv") std::printf("%s", csv.c_str());
    if (part == "json") std::printf("%s\n", rounded(json).dump(2).c_str());

    // Self-check: conv2 restored a channel at step 2, and the report adds up.
    const bool restored = pruner.log().at(2).groups.at(1).restored == 1;
    const bool sums = json["macs"]["before"] == 156736 && result.after.macs < result.before.macs;
    if (part.empty()) std::printf(restored && sums ? "report: all checks passed\n" : "report: FAIL\n");
    return restored && sums ? 0 : 1;
}
