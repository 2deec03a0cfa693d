#pragma once
/// VGG-16 for CIFAR-sized inputs at any per-layer width.

#include <nlohmann/json.hpp>

#include "models/model.hpp"

namespace trainer {

/// Config of an unpruned VGG-16 (cfg 64,64,M,128,128,M,256,256,256,M,
/// 512,512,512,M,512,512,512,M; conv3×3 + BN + ReLU; max pool 2×2 with
/// ceil_mode so 28×28 inputs work; global average pool; Linear to classes):
///   {"arch": "vgg", "depth": 16, "in_channels": 3, "num_classes": 10,
///    "input_size": [32, 32], "widths": [13 ints]}
/// Tensor names follow nn.Sequential indexing: "features.<i>.weight" for
/// conv i and "features.<i+1>.*" for its BN; "classifier.{weight,bias}".
nlohmann::json vgg_config(int num_classes = 10, int in_channels = 3, int input_h = 32, int input_w = 32);

/// Builds a VGG-16 from such a config, initialised from seed.
std::unique_ptr<model> make_vgg(const nlohmann::json& config, std::uint64_t seed = 0);

}  // namespace trainer
