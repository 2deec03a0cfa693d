#pragma once
/// CIFAR ResNets (He et al. 2016 §4.2) at any per-layer width.

#include <nlohmann/json.hpp>

#include "models/model.hpp"

namespace trainer {

/// Config of an unpruned CIFAR ResNet of depth 6n+2 (20, 32, 44, 56, 110):
///   {"arch": "resnet", "depth": 20, "shortcut": "A" | "B",
///    "in_channels": 3, "num_classes": 10, "input_size": [32, 32],
///    "stage_widths": [16, 32, 64],           // residual-stream width per stage (stem = stage 1)
///    "block_widths": [[16,16,16], [32,32,32], [64,64,64]],  // conv1 out = conv2 in, per block
///    "shortcut_maps": [[], [...32 ints], [...64 ints]]}     // option A only
/// shortcut_maps[s] (s ≥ 1) is the option-A shortcut of the first block of
/// stage s: output channel j takes input-stream channel map[j] subsampled by
/// 2 (x[:, :, ::2, ::2]), or zeros when map[j] = −1. The unpruned layout is
/// the SFP / fb.resnet.torch one, map[j] = j for j < C_in and −1 after
/// (zero channels appended; akamaster's variant pads both sides instead).
/// Stage 1 always has an identity shortcut (map []). Option B uses a 1×1
/// stride-2 conv + BN ("layerS.0.downsample.{0,1}") at the transitions.
nlohmann::json resnet_config(int depth, int num_classes = 10, int in_channels = 3, int input_h = 32,
                             int input_w = 32, char shortcut = 'A');

/// Builds a ResNet from such a config (any widths and maps), initialised
/// from seed. Throws std::invalid_argument naming the bad key.
std::unique_ptr<model> make_resnet(const nlohmann::json& config, std::uint64_t seed = 0);

}  // namespace trainer
