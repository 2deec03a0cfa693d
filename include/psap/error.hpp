#pragma once
/// \file error.hpp
/// psap::error: the one exception type the library throws for bad input.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace psap {

/// Thrown for every kind of bad input (shapes, non-finite values, ratios,
/// budgets, state blobs). The message names the layer or group, the value
/// and what would fix it.
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace detail {
/// Builds a message from streamable parts and throws psap::error.
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
    std::ostringstream os;
    (os << ... << std::forward<Parts>(parts));
    throw error(os.str());
}
}  // namespace detail

}  // namespace psap
