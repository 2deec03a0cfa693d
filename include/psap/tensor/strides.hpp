#pragma once
/// \file strides.hpp
/// Shared by the strided-tensor adapters (xtensor.hpp, torch.hpp): viewing a
/// rank-R strided tensor as N filters x K fan-in needs dimensions 1..R-1 to
/// collapse to one stride. `source` names the tensor kind and `fix` the
/// remedy in the messages.

#include <psap/error.hpp>
#include <psap/tensor/memory.hpp>

#include <cstddef>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace psap::detail {

template <class Shape, class Strides>
std::string describe_layout(const Shape& shape, const Strides& strides) {
    std::ostringstream os;
    os << "shape (";
    for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
    os << "), strides (";
    for (std::size_t i = 0; i < strides.size(); ++i) os << (i ? ", " : "") << strides[i];
    os << ")";
    return os.str();
}

/// The stride of the fan-in after collapsing dimensions [1, rank) (unit extents
/// dropped), with their product in `k`; fails with the reason when no single
/// stride walks them in storage order.
template <class Shape, class Strides>
index collapse_fan_in(const Shape& shape, const Strides& strides, index& k, const char* source, const char* fix) {
    std::vector<std::pair<index, index>> dims;  // (extent, stride) of the non-unit fan-in dimensions
    k = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) {
        k *= static_cast<index>(shape[i]);
        if (shape[i] != 1) dims.emplace_back(static_cast<index>(shape[i]), static_cast<index>(strides[i]));
    }
    if (dims.empty() || k == 0) return 1;
    for (const auto& d : dims)
        if (d.second == 0)
            fail("psap::filters: the ", source, " (", describe_layout(shape, strides),
                 ") repeats values along a fan-in dimension (stride 0, e.g. a broadcast); pruning must write "
                 "each weight once: ", fix);
    // Innermost last (row-major order): stride[a] == stride[a+1] * extent[a+1].
    // Innermost first (column-major order): stride[a+1] == stride[a] * extent[a].
    auto walks = [&](bool innermost_last) {
        for (std::size_t a = 0; a + 1 < dims.size(); ++a) {
            const auto& outer = innermost_last ? dims[a] : dims[a + 1];
            const auto& inner = innermost_last ? dims[a + 1] : dims[a];
            if (outer.second != inner.second * inner.first) return false;
        }
        return true;
    };
    if (walks(true)) return dims.back().second;
    if (walks(false)) return dims.front().second;
    fail("psap::filters: the fan-in of the ", source, " (", describe_layout(shape, strides), ") spans dimensions 1..",
         shape.size() - 1,
         " with strides no single stride can walk, so it cannot be viewed as N filters x K values without a copy; ", fix);
}

}  // namespace psap::detail
