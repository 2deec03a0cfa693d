#pragma once
/// \file ramp.hpp
/// Budget ramps B_t = B * r(x), x = progress / ramp_end clamped to [0, 1].

#include <psap/error.hpp>

#include <algorithm>
#include <cmath>
#include <string_view>

namespace psap {

enum class ramp_shape {
    constant,     ///< r = 1: the full budget from the first step (SFP)
    linear,       ///< r = x
    asymptotic,   ///< ASFP: r = (1 - 4^(-8x)) / (1 - 4^(-8)), 3/4 of B at x = 1/8
    cubic,        ///< AGP (Zhu & Gupta 2017): r = 1 - (1 - x)^3
};

inline const char* to_string(ramp_shape r) noexcept {
    switch (r) {
        case ramp_shape::constant: return "constant";
        case ramp_shape::linear: return "linear";
        case ramp_shape::asymptotic: return "asymptotic";
        case ramp_shape::cubic: return "cubic";
    }
    return "?";
}
inline ramp_shape parse_ramp_shape(std::string_view s) {
    if (s == "constant" || s == "const" || s == "none") return ramp_shape::constant;
    if (s == "linear") return ramp_shape::linear;
    if (s == "asymptotic" || s == "asfp") return ramp_shape::asymptotic;
    if (s == "cubic" || s == "agp") return ramp_shape::cubic;
    detail::fail("psap: unknown ramp '", s, "'; use constant, linear, asymptotic or cubic");
}

inline void from_string(std::string_view s, ramp_shape& r) { r = parse_ramp_shape(s); }

/// Fraction of the final budget to meet at `progress` when the ramp ends at `ramp_end`.
inline double ramp_fraction(ramp_shape shape, double progress, double ramp_end) {
    if (shape == ramp_shape::constant) return 1.0;
    const double x = ramp_end <= 0 ? 1.0 : std::clamp(progress / ramp_end, 0.0, 1.0);
    switch (shape) {
        case ramp_shape::linear: return x;
        case ramp_shape::asymptotic: return x >= 1.0 ? 1.0 : (1.0 - std::pow(4.0, -8.0 * x)) / (1.0 - std::pow(4.0, -8.0));
        case ramp_shape::cubic: return 1.0 - (1.0 - x) * (1.0 - x) * (1.0 - x);
        default: return 1.0;
    }
}

}  // namespace psap
