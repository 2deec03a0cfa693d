#pragma once
/// \file memory.hpp
/// Memory-space tags carried by views; the tag selects the backend.

#include <concepts>
#include <cstddef>

namespace psap {

/// Index type of every extent and stride (signed, like std::ptrdiff_t).
using index = std::ptrdiff_t;

/// Memory a host CPU can dereference.
struct host_memory {
    static constexpr const char* name = "host";
};
/// Memory of a CUDA device; dereferenced only inside kernels.
struct device_memory {
    static constexpr const char* name = "device";
};

/// A memory-space tag psap knows a backend for.
template <class M>
concept memory_space = std::same_as<M, host_memory> || std::same_as<M, device_memory>;

}  // namespace psap
