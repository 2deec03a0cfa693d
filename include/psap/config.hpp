#pragma once
/// \file config.hpp
/// Policies <-> JSON through their fields(): {"name": "...", "param": value}.
/// Unknown parameters and wrong types are errors that list the valid keys.

#include <psap/error.hpp>

#include <nlohmann/json.hpp>

#include <concepts>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>

namespace psap {

namespace detail {
template <class E>
concept string_enum = std::is_enum_v<E> && requires(E e, std::string_view s) {
    { to_string(e) } -> std::convertible_to<std::string>;
    from_string(s, e);
};
}  // namespace detail

/// The policy's name and hyper-parameters.
template <class P>
nlohmann::json policy_config(P p) {
    nlohmann::json j;
    j["name"] = P::name;
    p.fields([&](const char* key, auto& value) {
        using V = std::remove_cvref_t<decltype(value)>;
        if constexpr (detail::string_enum<V>)
            j[key] = to_string(value);
        else
            j[key] = value;
    });
    return j;
}

/// A policy built from its JSON configuration (missing keys keep their defaults).
template <class P>
P policy_from_config(const nlohmann::json& j, P p = {}) {
    if (!j.is_object()) detail::fail("psap: the configuration of policy '", P::name, "' must be a JSON object, got ", j.dump());
    std::set<std::string> known{"name"};
    p.fields([&](const char* key, auto& value) {
        known.insert(key);
        if (!j.contains(key)) return;
        const auto& x = j.at(key);
        using V = std::remove_cvref_t<decltype(value)>;
        auto wrong = [&](const char* expected) {
            detail::fail("psap: parameter '", key, "' of policy '", P::name, "' must be ", expected, ", got ", x.dump());
        };
        if constexpr (std::is_same_v<V, bool>) {
            if (!x.is_boolean()) wrong("true or false");
            value = x.get<bool>();
        } else if constexpr (detail::string_enum<V>) {
            if (!x.is_string()) wrong("a string");
            from_string(x.get<std::string>(), value);
        } else if constexpr (std::is_integral_v<V>) {
            if (!x.is_number_integer() || (std::is_unsigned_v<V> && x.get<std::int64_t>() < 0 && !x.is_number_unsigned()))
                wrong(std::is_unsigned_v<V> ? "a non-negative integer" : "an integer");
            value = x.get<V>();
        } else {
            if (!x.is_number()) wrong("a number");
            value = x.get<V>();
        }
    });
    for (const auto& [key, _] : j.items())
        if (!known.count(key)) {
            std::string valid;
            for (const auto& k : known)
                if (k != "name") valid += (valid.empty() ? "" : ", ") + k;
            detail::fail("psap: policy '", P::name, "' has no parameter '", key, "'; valid: ", valid.empty() ? "(none)" : valid);
        }
    return p;
}

}  // namespace psap
