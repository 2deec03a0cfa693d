#pragma once
/// \file state.hpp
/// The pruner's state blob: CBOR of a JSON object tagged with a format name,
/// a version and the network's structure fingerprint.

#include <psap/error.hpp>
#include <psap/report/step_log.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <span>
#include <vector>

namespace psap {

inline constexpr const char* state_format = "psap-pruner-state";
inline constexpr int state_version = 2;

namespace detail {
/// FNV-1a over the payload: catches flipped or lost bytes that would still parse.
inline std::uint64_t state_checksum(std::span<const std::uint8_t> bytes) noexcept {
    std::uint64_t h = 1469598103934665603ull;
    for (auto b : bytes) h = (h ^ b) * 1099511628211ull;
    return h;
}
}  // namespace detail

/// The blob state() returns: an envelope (format, version, fingerprint,
/// checksum) around the CBOR payload.
inline std::vector<std::uint8_t> wrap_state(const nlohmann::json& payload, std::uint64_t fingerprint) {
    auto bytes = nlohmann::json::to_cbor(payload);
    const auto sum = detail::state_checksum(bytes);
    nlohmann::json env{{"format", state_format},
                       {"version", state_version},
                       {"fingerprint", fingerprint},
                       {"checksum", sum},
                       {"payload", nlohmann::json::binary(std::move(bytes))}};
    return nlohmann::json::to_cbor(env);
}

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

namespace detail {
/// Accepts any CBOR nested at most `limit` arrays/objects deep, building
/// nothing. nlohmann's CBOR reader recurses once per level, so a blob of
/// nested arrays a few hundred thousand deep would overflow the stack; a
/// handler that refuses to open a level stops it. A state is ~6 levels deep.
class cbor_depth_check final : public nlohmann::json_sax<nlohmann::json> {
public:
    explicit cbor_depth_check(std::size_t limit) : limit_(limit) {}
    bool too_deep() const { return too_deep_; }
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return open(); }
    bool key(string_t&) override { return true; }
    bool end_object() override { return close(); }
    bool start_array(std::size_t) override { return open(); }
    bool end_array() override { return close(); }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

private:
    bool open() {
        too_deep_ = ++depth_ > limit_;
        return !too_deep_;
    }
    bool close() {
        --depth_;
        return true;
    }
    std::size_t limit_, depth_ = 0;
    bool too_deep_ = false;
};
}  // namespace detail

/// Parses and checks a state blob: format, version, fingerprint, group count.
inline nlohmann::json parse_state(std::span<const std::uint8_t> blob, std::uint64_t fingerprint, std::size_t groups) {
    auto parse = [&](std::span<const std::uint8_t> bytes, const char* what) {
        constexpr std::size_t max_depth = 64;
        detail::cbor_depth_check depth(max_depth);
        if (!nlohmann::json::sax_parse(bytes.begin(), bytes.end(), &depth, nlohmann::json::input_format_t::cbor) && depth.too_deep())
            detail::fail("psap::pruner::load_state: the state ", what, " (", bytes.size(), " bytes) nests more than ", max_depth,
                         " levels deep; it is not a psap pruner state: pass the exact bytes returned by state()");
        try {
            return nlohmann::json::from_cbor(bytes.begin(), bytes.end());
        } catch (const nlohmann::json::exception& e) {
            detail::fail("psap::pruner::load_state: the state ", what, " (", bytes.size(), " bytes) is corrupt or truncated (", e.what(),
                         "); pass the exact bytes returned by state()");
        }
    };
    const nlohmann::json env = parse(blob, "blob");
    if (!env.is_object() || !env.contains("format") || env.at("format") != state_format)
        detail::fail("psap::pruner::load_state: the blob is not a psap pruner state (missing format tag '", state_format, "')");
    const auto version = env.contains("version") && env.at("version").is_number_integer() ? env.at("version").get<int>() : 0;
    if (version != state_version)
        detail::fail("psap::pruner::load_state: state version ", version, " is not supported (this build reads version ",
                     state_version, ")");
    const auto fp = env.contains("fingerprint") && env.at("fingerprint").is_number_unsigned() ? env.at("fingerprint").get<std::uint64_t>() : 0;
    if (fp != fingerprint)
        detail::fail("psap::pruner::load_state: the state was saved from another network (structure fingerprint ", fp,
                     ", this network ", fingerprint,
                     "); load it into a network with the same layers and groups, built in the same order");
    if (!env.contains("payload") || !env.at("payload").is_binary() || !env.contains("checksum") ||
        !env.at("checksum").is_number_unsigned())
        detail::fail("psap::pruner::load_state: the state blob has no payload or checksum; pass the exact bytes returned by state()");
    const auto& payload = env.at("payload").get_binary();
    if (detail::state_checksum(payload) != env.at("checksum").get<std::uint64_t>())
        detail::fail("psap::pruner::load_state: the state payload does not match its checksum (", payload.size(),
                     " bytes); the blob was altered or truncated");
    nlohmann::json j = parse(payload, "payload");
    if (!j.is_object() || !j.contains("groups") || !j.at("groups").is_array() || j.at("groups").size() != groups)
        detail::fail("psap::pruner::load_state: the state describes ",
                     j.is_object() && j.contains("groups") && j.at("groups").is_array() ? j.at("groups").size() : 0,
                     " groups, the network has ", groups);
    return j;
}

}  // namespace psap
