#pragma once
// Drives a pruner through the four hooks as a training loop would, with the
// presets as types (for TEST_CASE_TEMPLATE) and a record of every decision.
#include <psap/any_pruner.hpp>
#include <psap/presets.hpp>

#include <support/model.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace psap_test {

// ------------------------------------------------------------------ presets as types
#define PSAP_TEST_PRESET(type, fn, label)                                         \
    struct type {                                                                 \
        static constexpr const char* name = label;                                \
        static auto make(psap::budget b, double epochs) { return fn(b, epochs); } \
    }
PSAP_TEST_PRESET(preset_psap, psap::presets::psap<>, "psap");
PSAP_TEST_PRESET(preset_static_gate, psap::presets::static_gate<>, "static_gate");
PSAP_TEST_PRESET(preset_sfp, psap::presets::sfp<>, "sfp");
PSAP_TEST_PRESET(preset_asfp, psap::presets::asfp<>, "asfp");
PSAP_TEST_PRESET(preset_fpgm, psap::presets::fpgm_pruner<>, "fpgm");
PSAP_TEST_PRESET(preset_l1, psap::presets::l1<>, "l1");
PSAP_TEST_PRESET(preset_slimming, psap::presets::slimming<>, "slimming");
PSAP_TEST_PRESET(preset_taylor, psap::presets::taylor_pruner<>, "taylor");
PSAP_TEST_PRESET(preset_agp, psap::presets::agp_pruner<>, "agp");
struct preset_random {
    static constexpr const char* name = "random";
    static auto make(psap::budget b, double epochs) { return psap::presets::random<>(b, epochs, 0); }
};
#undef PSAP_TEST_PRESET

/// "" when a == b, else the path and both values of the first difference (short failure messages).
inline std::string json_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& path = "") {
    if (a == b) return "";
    if (a.type() == b.type() && a.is_array() && a.size() == b.size()) {
        for (std::size_t i = 0; i < a.size(); ++i)
            if (auto d = json_difference(a[i], b[i], str(path, "[", i, "]")); !d.empty()) return d;
    }
    if (a.type() == b.type() && a.is_object() && a.size() == b.size()) {
        for (const auto& [k, v] : a.items())
            if (b.contains(k))
                if (auto d = json_difference(v, b.at(k), path + "." + k); !d.empty()) return d;
    }
    return path + ": " + a.dump().substr(0, 200) + " vs " + b.dump().substr(0, 200);
}

// ------------------------------------------------------------------ a training run
struct run_options {
    std::uint64_t grad_seed = 1;
    int epochs = 8;
    int iterations = 4;  ///< observe/update pairs per epoch
    double lr = 0.05;
    double grad_scale = 0.05;
    int first_epoch = 0;  ///< resume from here (iterations are numbered globally)
};

/// What a run decided: the masks after every step (by group name) and the log JSON.
struct record {
    std::vector<std::map<std::string, std::vector<std::uint8_t>>> masks;
    nlohmann::json log = nlohmann::json::array();
};

/// Epochs [first_epoch, epochs): `iterations` x (gradients, observe, SGD, after_update),
/// then step(net, e + 1). `after_step(e)` runs after each step.
template <class Pruner, class T>
record run(Pruner& p, model<T>& m, const run_options& o, const std::function<void(int)>& after_step = {}) {
    record r;
    for (int e = o.first_epoch; e < o.epochs; ++e) {
        for (int it = 0; it < o.iterations; ++it) {
            m.fill_grads(o.grad_seed, e * o.iterations + it, o.grad_scale);
            p.observe(m.net());
            m.sgd(o.lr);
            p.after_update(m.net());
        }
        const auto& entry = p.step(m.net(), e + 1);
        r.masks.push_back(masks_by_name(p, m.net()));
        r.log.push_back(entry);
        if (after_step) after_step(e);
    }
    return r;
}

}  // namespace psap_test
