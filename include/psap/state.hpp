#pragma once
/// \file state.hpp
/// The pruner's state blob: CBOR of a JSON object tagged with a format name,
/// a version and the network's structure fingerprint.

#include <psap/error.hpp>
#include <psap/report/step_log.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <span>

namespace psap {

inline constexpr const char* state_format = "psap-pruner-state";
inline constexpr int state_version = 1;

inline void from_json(const nlohmann::json& j, group_decision& d) {
    auto num = [&](const char* k) { return j.at(k).is_null() ? not_measured : j.at(k).get<double>(); };
    d.group = j.at("group").get<std::string>();
    d.size = j.at("size").get<index>();
    d.sparsity = num("sparsity");
    d.pressure = num("pressure");
    d.ratio = j.at("ratio").get<double>();
    d.target = j.at("target").get<index>();
    d.pruned = j.at("pruned").get<index>();
    d.newly_pruned = j.at("newly_pruned").get<index>();
    d.restored = j.at("restored").get<index>();
    d.released = j.at("released").get<index>();
    d.pulses = j.at("pulses").get<index>();
    d.protected_count = j.at("protected").get<index>();
    d.protected_effective = j.at("protected_effective").get<index>();
}

inline void from_json(const nlohmann::json& j, step_log& s) {
    s.step = j.at("step").get<index>();
    s.epoch = j.at("epoch").get<double>();
    s.progress = j.at("progress").get<double>();
    s.frozen = j.at("frozen").get<bool>();
    s.budget_now = j.at("budget").get<double>();
    s.mu = j.at("mu").is_null() ? not_measured : j.at("mu").get<double>();
    s.relaxed = j.at("relaxed").get<bool>();
    s.achieved = {j.at("macs").get<std::int64_t>(), j.at("params").get<std::int64_t>(), j.at("filters").get<std::int64_t>()};
    s.reduction = j.at("reduction").get<double>();
    s.groups = j.at("groups").get<std::vector<group_decision>>();
}

/// Parses and checks a state blob: format, version, fingerprint, group count.
inline nlohmann::json parse_state(std::span<const std::uint8_t> blob, std::uint64_t fingerprint, std::size_t groups) {
    nlohmann::json j;
    try {
        j = nlohmann::json::from_cbor(blob.begin(), blob.end());
    } catch (const nlohmann::json::exception& e) {
        detail::fail("psap::pruner::load_state: the state blob (", blob.size(), " bytes) is corrupt or truncated (", e.what(),
                     "); pass the exact bytes returned by state()");
    }
    if (!j.is_object() || j.value("format", "") != state_format)
        detail::fail("psap::pruner::load_state: the blob is not a psap pruner state (missing format tag '", state_format, "')");
    if (j.value("version", 0) != state_version)
        detail::fail("psap::pruner::load_state: state version ", j.value("version", 0), " is not supported (this build reads version ",
                     state_version, ")");
    const auto fp = j.value("fingerprint", std::uint64_t{0});
    if (fp != fingerprint)
        detail::fail("psap::pruner::load_state: the state was saved from another network (structure fingerprint ", fp,
                     ", this network ", fingerprint,
                     "); load it into a network with the same layers and groups, built in the same order");
    if (!j.contains("groups") || j.at("groups").size() != groups)
        detail::fail("psap::pruner::load_state: the state describes ", j.contains("groups") ? j.at("groups").size() : 0,
                     " groups, the network has ", groups);
    return j;
}

}  // namespace psap
