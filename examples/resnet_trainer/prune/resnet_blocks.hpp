#pragma once
/// Internal to prune/: the block structure of a trainer ResNet, read from its
/// conv names ("conv1" for the stem, "layer<S>.<B>.conv1|conv2|downsample.0").

#include <string>
#include <vector>

#include "models/model.hpp"

namespace trainer::prune::detail {

struct block_info {
  std::string prefix;     ///< "layer2.0"
  int stage = 0;          ///< 0-based stage of the block's output stream
  int input_stream = 0;   ///< 0-based stage whose stream the block reads
  int conv1 = -1, conv2 = -1, down = -1;  ///< indices in conv_layers() (down: option B transitions)
};

/// Blocks in network order; std::invalid_argument for an unexpected conv name.
std::vector<block_info> resnet_blocks(const std::vector<conv_ref>& convs);
/// Index of the stem conv "conv1" in conv_layers(); std::invalid_argument if absent.
int resnet_stem(const std::vector<conv_ref>& convs);

}  // namespace trainer::prune::detail
