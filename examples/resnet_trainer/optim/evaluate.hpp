#pragma once
/// Evaluating a model on a data set, and the batch-source callback used by
/// evaluation and BN recalibration.

#include <cstdint>
#include <functional>

#include "models/model.hpp"

namespace trainer {

/// Supplies batches: sets images (n × C × H × W floats, normalised as the
/// model expects), labels (may be nullptr when not needed) and n; returns
/// false when there are no more batches.
using batch_source = std::function<bool(const float*& images, const std::int32_t*& labels, int& n)>;

struct eval_result {
  double loss = 0.0;       ///< mean cross-entropy over all images
  double accuracy = 0.0;   ///< fraction of images whose top-1 logit is the label
  std::int64_t count = 0;  ///< images seen
};

/// Eval-mode pass over every batch of `source` (labels required).
eval_result evaluate(model& m, const batch_source& source);

/// Batches of `batch` consecutive images of an in-memory, already
/// normalised data set (the last batch may be short).
batch_source array_source(const float* images, const std::int32_t* labels, std::int64_t count,
                          std::int64_t image_size, int batch);

}  // namespace trainer
