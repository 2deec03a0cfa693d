#pragma once
/// Re-estimating BN running statistics with the weights fixed.

#include "models/model.hpp"
#include "optim/evaluate.hpp"

namespace trainer {

/// Resets every BN's running statistics and runs up to `batches` train-mode
/// forwards from `source` with cumulative averaging (torch momentum=None:
/// the running estimate is the plain mean of the batch statistics), then
/// restores each BN's momentum. Weights and gradients are not touched.
/// Returns the number of batches used.
int recalibrate_bn(model& m, const batch_source& source, int batches);

}  // namespace trainer
