#pragma once
/// \file group.hpp
/// A group of coupled output channels: pruned, scored and removed together.

#include <psap/tensor/memory.hpp>

#include <string>
#include <vector>

namespace psap {

/// Channels [offset, offset + group size) of layer `layer`.
struct channel_span {
    index layer = 0;
    index offset = 0;
};

/// Channel i of the group is channel offset+i of every member's output (the
/// conv filter and its BN entry) and input channel offset+i of every consumer.
/// A conv with its BN is one member; convs tied by a residual sum are several
/// members; a concat is expressed by consumer offsets.
struct group {
    std::string name;
    index size = 0;
    std::vector<channel_span> members;    ///< layers whose output channels are the group
    std::vector<channel_span> consumers;  ///< layers whose input channels are the group
};

}  // namespace psap
