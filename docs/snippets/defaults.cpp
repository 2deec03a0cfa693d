// Prints every shipped policy's configuration name and default parameters
// (from its fields()), and what each preset sets. The policy pages show this
// output (docs/schedules.md, criteria.md, protectors.md, reconstruction.md,
// integration.md), and scripts/check_docs.py compares it with the program's.
//   defaults [schedules|criteria|protectors|reconstruction|presets]
#include <psap/psap.hpp>

#include <cstdio>
#include <string>
#include <string_view>

namespace {

/// `name  {"param": default, ...}` with the name taken out of the JSON object.
template <class P>
void line(P p = {}) {
    nlohmann::json j = psap::policy_config(p);
    j.erase("name");
    std::printf("%-18s %s\n", P::name, j.empty() ? "(no parameters)" : j.dump().c_str());
}

/// A preset's policies, each with only the parameters that differ from the
/// policy's defaults.
void preset_line(std::string_view name) {
    const nlohmann::json p = psap::preset_config(name);
    const auto& reg = psap::policy_registry<>::instance();
    std::string out;
    for (const char* fam : {"schedule", "criterion", "protect", "reconstruct"}) {
        const nlohmann::json& cfg = p.at(fam);
        const std::string policy = cfg.at("name").get<std::string>();
        nlohmann::json defaults;
        if (std::string_view(fam) == "schedule") defaults = reg.schedule({{"name", policy}}).config();
        if (std::string_view(fam) == "criterion") defaults = reg.criterion({{"name", policy}}).config();
        if (std::string_view(fam) == "protect") defaults = reg.protector({{"name", policy}}).config();
        if (std::string_view(fam) == "reconstruct") defaults = reg.reconstructor({{"name", policy}}).config();
        nlohmann::json changed = nlohmann::json::object();
        for (const auto& [k, v] : cfg.items())
            if (defaults.at(k) != v) changed[k] = v;
        out += (out.empty() ? "" : " + ") + policy + (changed.empty() ? "" : changed.dump());
    }
    if (p.at("final_phase").get<double>() > 0) out += ", final_phase " + p.at("final_phase").dump();
    std::printf("%-12s %s\n", std::string(name).c_str(), out.c_str());
}

}  // namespace

int main(int argc, char** argv) {
    const std::string_view only = argc > 1 ? argv[1] : "";
    auto want = [&](std::string_view family) { return only.empty() || only == family; };
    if (want("schedules")) {
        line<psap::uniform>();
        line<psap::asymptotic>();
        line<psap::agp>();
        line<psap::global_threshold>();
        line<psap::adaptive_sparsity>();
    }
    if (want("criteria")) {
        line<psap::l1_norm>();
        line<psap::l2_norm>();
        line<psap::fpgm>();
        line<psap::taylor>();
        line<psap::bn_scale>();
        line<psap::random_score>();
    }
    if (want("protectors")) {
        line<psap::no_protection>();
        line<psap::gradient_pulse>();
    }
    if (want("reconstruction")) {
        line<psap::soft>();
        line<psap::hard>();
        line<psap::decay>();
        line<psap::protective>();
    }
    if (want("presets"))
        for (auto name : psap::presets::names) preset_line(name);
    return 0;
}
