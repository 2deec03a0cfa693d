#pragma once
/// A trainer model described as a psap::network: every conv (weight and
/// gradient views, geometry, its batch norm with γ, β, running statistics,
/// γ/β gradients and the gate gradient) and the classifier as layers, and the
/// groups of coupled channels psap prunes. Only the model's public interface
/// (conv_layers(), bn_layers(), classifier(), tensors(), config()) is used.
///
/// Group modes (docs/pruning-run.md):
///   internal         ResNet: one group per residual block's internal
///                    channels (conv1 + bn1, consumer conv2). VGG: one group
///                    per conv + BN, consumer the next conv or the classifier.
///   internal+stream  also the residual streams. Option B: one group per
///                    stage (stem or 1×1 projection + BN, and every conv2 +
///                    bn2 of the stage). Option A: the identity shortcut
///                    carries stage s's channel map[j] into channel j of
///                    stage s+1, so gating a stage alone would not zero a
///                    channel; a group is a set of channel *lineages* (the
///                    chains linked by the shortcut maps), with a member
///                    offset per stage: with the SFP layout, "stream.1" is the
///                    stem, every stage-1 conv2 and channels [0,16) of every
///                    stage-2 and stage-3 conv2; "stream.2" channels [16,32)
///                    of stages 2 and 3; "stream.3" channels [32,64) of stage 3.
/// VGG has no residual streams: both modes describe it the same way.

#include <psap/network/network.hpp>

#include <string>
#include <vector>

#include "models/model.hpp"

namespace trainer::prune {

enum class group_mode { internal, internal_stream };

/// "internal" or "internal+stream"; std::invalid_argument otherwise.
group_mode parse_group_mode(const std::string& s);
std::string to_string(group_mode m);

/// What a group is in the model.
enum class group_kind {
  internal,  ///< one member (conv + BN) followed by ReLU only: a constant left in a
             ///< pruned channel can be folded into its consumers (prune/compact.hpp)
  stream     ///< a residual stream: several members tied by residual sums
};

struct network_description {
  psap::network<float> net;
  std::vector<int> conv_of_layer;  ///< psap layer id -> index in conv_layers() (-1: the classifier)
  psap::index classifier_layer = -1;
  std::string classifier_name;     ///< tensor-name prefix of the classifier ("fc", "classifier")
  std::vector<group_kind> kinds;   ///< per psap group
  group_mode mode = group_mode::internal;
  std::string arch;                ///< "resnet" or "vgg"
  char shortcut = 0;               ///< 'A' or 'B' for ResNets
};

/// Describes `m` (views into its storage: `m` must outlive the result and
/// keep its buffers in place). Throws std::invalid_argument for a model this
/// function does not know, or option-A shortcut maps whose lineages cannot
/// be expressed as groups (a channel copied into two channels of the next
/// stage).
network_description describe(model& m, group_mode mode);

/// The tensor-name prefix of m.classifier() ("fc" in ResNets, "classifier" in VGG).
std::string classifier_name(model& m);

}  // namespace trainer::prune
