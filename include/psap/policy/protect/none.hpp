#pragma once
/// \file none.hpp
/// No protection: every channel is a candidate, nothing is restored.

#include <psap/policy/protect/concept.hpp>

namespace psap {

struct no_protection {
    static constexpr const char* name = "none";

    template <class V>
    void fields(V&&) {}

    template <class Net>
    void restores(const Net&, const step_context&, std::span<std::vector<index>>) const {}
    template <class Net>
    void shield(const Net&, const step_context&, std::span<const index>, std::span<std::vector<index>>) const {}
};

}  // namespace psap
