#pragma once
// The seed of every randomised test: PSAP_TEST_SEED or a fixed default.
#include <cstdint>
#include <cstdlib>
#include <string>

namespace psap_test {
inline std::uint64_t seed() {
    static const std::uint64_t s = [] {
        const char* e = std::getenv("PSAP_TEST_SEED");
        return e ? std::stoull(e) : std::uint64_t{20261128};
    }();
    return s;
}
}  // namespace psap_test
