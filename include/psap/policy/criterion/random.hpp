#pragma once
/// \file random.hpp
/// Random scores, the floor every criterion must beat. Counter-based: the
/// score of a channel is a hash of (seed, step, group name, channel), so it
/// does not depend on the order groups are visited or on the backend.

#include <psap/network/network.hpp>
#include <psap/policy/context.hpp>

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace psap {

namespace detail {
constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
constexpr std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 1469598103934665603ull;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return h;
}
}  // namespace detail

struct random_score {
    std::uint64_t seed = 0;
    /// false: one random ranking for the whole run (masks only grow with the
    /// budget); true: a fresh ranking at every step.
    bool resample_each_step = false;

    static constexpr const char* name = "random";

    template <class V>
    void fields(V&& v) {
        v("seed", seed);
        v("resample_each_step", resample_each_step);
    }

    template <class Net>
    void score(const Net& net, const step_context& ctx, std::span<std::vector<double>> scores) const {
        for (std::size_t g = 0; g < scores.size(); ++g) {
            const std::uint64_t base =
                detail::splitmix64(seed ^ detail::splitmix64(detail::fnv1a(net.groups()[g].name) ^
                                                             detail::splitmix64(resample_each_step ? static_cast<std::uint64_t>(ctx.info.step) : 0)));
            for (std::size_t c = 0; c < scores[g].size(); ++c)
                scores[g][c] = static_cast<double>(detail::splitmix64(base + c) >> 11) * 0x1.0p-53;
        }
    }
};

}  // namespace psap
