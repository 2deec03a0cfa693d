// Run-time configuration (docs/integration.md, "Presets and JSON
// configurations"): make_pruner from JSON, what a configuration resolves to,
// and a type-erased pruner driven by the same four hooks as a static one.
// `config resolve` prints the resolved configuration shown in the docs.
#include "toy_model.hpp"

#include <psap/psap.hpp>

#include <cstdio>
#include <cstring>

namespace {

int failures = 0;
void expect(bool ok, const char* what) {
    if (!ok) std::printf("FAIL: %s\n", what), ++failures;
}

// [config-json]
// Start from the "psap" preset, change two parameters, remove 60% of the MACs
// over 30 epochs. Unknown keys and wrong types are errors that list the
// valid ones.
const char* const psap_variant = R"({
    "preset": "psap",
    "budget": {"kind": "flops", "target": 0.6},
    "total_epochs": 30,
    "schedule": {"eta": 0.3},
    "protect": {"kappa": 4}
})";
// [config-json]

// [config-explicit]
// No preset: all four families named, parameters as in each policy's
// fields(). A family given as a string takes that policy's defaults.
const char* const fpgm_hard = R"({
    "budget": {"kind": "params", "target": 0.4},
    "total_epochs": 20,
    "schedule": {"name": "agp", "ramp_end": 0.5},
    "criterion": "fpgm",
    "protect": "none",
    "reconstruct": "hard"
})";
// [config-explicit]

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "resolve") == 0) {
        std::printf("%s\n", psap::resolve_config(nlohmann::json::parse(psap_variant)).dump(2).c_str());
        return 0;
    }

    toy::model m(16, 16, 1);
    psap::network<float> net = toy::describe(m);

    // [make-pruner]
    psap::any_pruner<> pruner = psap::make_pruner(nlohmann::json::parse(psap_variant));
    // What it resolved to, every parameter explicit: store it with the results.
    const nlohmann::json config = psap::describe(pruner);
    // [make-pruner]
    expect(config["schedule"]["eta"] == 0.3, "merged schedule parameter");
    expect(config["schedule"]["alpha"] == 0.2, "preset default kept");
    expect(config["protect"]["kappa"] == 4.0, "merged protector parameter");
    expect(config["budget"]["target"] == 0.6, "budget");

    // The same hooks as a static pruner.
    for (int epoch = 0; epoch <= 3; ++epoch) {
        for (int it = 0; epoch > 0 && it < 5; ++it) {
            m.forward_backward(toy::make_batch(1, std::uint64_t(epoch * 5 + it), 16));
            pruner.observe(net);
            m.sgd(0.05f, 0.9f, 5e-4f);
            pruner.after_update(net);
        }
        pruner.step(net, epoch);
    }
    expect(pruner.log().back().reduction > 0, "the any_pruner pruned");

    // [static-compose]
    // Any four policies, their parameters set in C++; options by name.
    psap::pruner<psap::asymptotic, psap::fpgm, psap::no_protection, psap::soft> composed(
        {.target = {psap::budget_kind::params, 0.4}, .total_epochs = 20, .keep_multiple = 8},
        psap::asymptotic{.ramp_end = 0.5}, psap::fpgm{}, psap::no_protection{}, psap::soft{.mask_gradients = true});

    // A preset is such a pruner; its policies stay reachable.
    auto tuned = psap::presets::psap({psap::budget_kind::flops, 0.5}, 30);
    tuned.schedule().eta = 0.3;
    tuned.protector().kappa = 4;
    // [static-compose]
    composed.step(net, 20);
    expect(composed.log().back().reduction >= 0.4, "composed pruner met its params budget");
    for (const auto& g : composed.log().back().groups) expect((g.size - g.pruned) % 8 == 0, "kept counts are multiples of 8");

    auto other = psap::make_pruner(nlohmann::json::parse(fpgm_hard));
    expect(psap::describe(other)["criterion"]["name"] == "fpgm", "explicit criterion");
    expect(psap::describe(other)["budget"]["kind"] == "params", "budget kind");

    std::printf(failures ? "config: %d check(s) failed\n" : "config: all checks passed\n", failures);
    return failures ? 1 : 0;
}
