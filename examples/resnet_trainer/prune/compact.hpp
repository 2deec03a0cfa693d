#pragma once
/// Compaction: from psap's final keep-lists, the physically smaller twin of a
/// masked trainer model, computing the same function (eval mode).
///
/// Every group's pruned channels are removed from its members (filters, bias,
/// BN entries) and from its consumers (input channels). What a removed
/// channel contributed decides how:
///   * batch norm gated (γ = β = 0; protective, hard, decay after finalize):
///     the channel outputs exactly 0 — dropped;
///   * filter (and bias) zero but batch norm untouched (soft, SFP): in eval
///     mode the BN emits the constant c = β − γ·μ/√(σ² + ε), the consumer sees
///     ReLU(c) at every position. A zero-padded conv applied to a constant map
///     is not constant at the borders, so the consumer's response to the
///     removed constants is computed once by running the consumer conv on the
///     constant input and stored as a per-position additive map
///     "<consumer>.bias_map" (C_out × H_out × W_out, nn/bias_map.hpp); into a
///     classifier it folds into the bias. Only for groups of one member
///     followed by ReLU (group_kind::internal);
///   * anything else cannot be removed exactly: compaction_error.
/// Option-A shortcut maps are renumbered to the kept stream channels.

#include <psap/report/result.hpp>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/model.hpp"
#include "prune/describe.hpp"

namespace trainer::prune {

/// A masked network that cannot be compacted exactly, or keep-lists that do
/// not belong to the description.
class compaction_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct compaction {
  std::unique_ptr<model> net;          ///< the compact model (weights copied)
  nlohmann::json config;               ///< its make_model() config: every width, renumbered maps, "bias_maps"
  std::vector<std::string> bias_maps;  ///< convs given a new or updated bias map
  std::int64_t removed_zero = 0;      ///< pruned channels (per member) that output exactly 0
  std::int64_t removed_constant = 0;   ///< pruned channels whose constant was folded into consumers
};

/// Compacts `masked`, described by `d` (describe(masked, ...)), with the
/// keep-lists of `result` (pruner.finalize()). `masked` is not changed
/// (its consumer convs run once in eval mode to compute bias maps).
compaction compact(model& masked, const network_description& d, const psap::pruning_result& result);

/// max |a(x) − b(x)| over the logits of n images, both in eval mode.
double max_abs_logit_diff(model& a, model& b, const float* x, int n);

struct logit_comparison {
  double max_abs_diff = 0;   ///< max |a(x) − b(x)|
  double max_abs_logit = 0;  ///< max |a(x)|: the scale the difference is measured against
};
/// Both numbers over the logits of n images, both models in eval mode.
logit_comparison compare_logits(model& a, model& b, const float* x, int n);

}  // namespace trainer::prune
