// Batches of normalised, optionally augmented float NCHW images, prepared on
// a background thread while the caller trains on the previous batch.
//
// Batch k of epoch e is a pure function of (data, config, e, k): the visiting
// order is epoch_order(n, seed, e) and each sample's crop/flip is keyed by
// (seed, e, sample index). A run resumed at an epoch boundary therefore sees
// exactly the batches an uninterrupted run would.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/augment.hpp"
#include "data/dataset.hpp"

namespace trainer {

struct batch {
  std::vector<float> images;         // size x C x H x W, normalised
  std::vector<std::int32_t> labels;  // size
  std::vector<std::size_t> indices;  // source sample index of each row
  image_shape shape;                 // of one image
  std::size_t size = 0;              // rows in this batch (the last one may be short)
  std::uint64_t epoch = 0;
  std::size_t index = 0;  // batch number within the epoch
};

struct loader_config {
  std::size_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;  // drop a final short batch
  augment_config augment;
  std::uint64_t seed = 0;
  bool background = true;  // prepare the next batch on a worker thread
  // Optional extra step run on each finished batch in the preparing thread
  // (e.g. a custom augmentation); an exception it throws reaches next().
  std::function<void(batch&)> post_process;
};

class batch_loader {
 public:
  // Keeps a reference to `data`, which must outlive the loader. Throws
  // data_error for an invalid data set or configuration.
  batch_loader(const dataset& data, loader_config cfg);
  ~batch_loader();
  batch_loader(const batch_loader&) = delete;
  batch_loader& operator=(const batch_loader&) = delete;

  [[nodiscard]] std::size_t batches_per_epoch() const noexcept { return batches_; }
  [[nodiscard]] std::size_t samples_per_epoch() const noexcept;
  [[nodiscard]] const dataset& data() const noexcept { return data_; }
  [[nodiscard]] const loader_config& config() const noexcept { return cfg_; }

  // Begins epoch `epoch` at batch `first_batch`, discarding anything prepared
  // for an earlier request.
  void start_epoch(std::uint64_t epoch, std::size_t first_batch = 0);

  // The next batch of the current epoch into `out` (its buffers are reused);
  // false after the last one. An exception raised while preparing a batch is
  // rethrown here (and again on later calls until start_epoch).
  bool next(batch& out);

  // Batch k of epoch e, built synchronously on the calling thread.
  void make_batch(std::uint64_t epoch, std::size_t k, batch& out) const;

 private:
  [[nodiscard]] std::vector<std::size_t> order_for(std::uint64_t epoch) const;
  void fill(std::uint64_t epoch, const std::vector<std::size_t>& order, std::size_t k, batch& out) const;
  void worker_main();

  const dataset& data_;
  loader_config cfg_;
  image_shape shape_;
  std::size_t batches_ = 0;

  std::mutex m_;
  std::condition_variable worker_cv_;
  std::condition_variable consumer_cv_;
  std::uint64_t generation_ = 0;
  bool started_ = false;
  bool stop_ = false;
  std::uint64_t epoch_ = 0;
  std::shared_ptr<const std::vector<std::size_t>> order_;
  std::size_t next_to_make_ = 0;
  std::size_t next_to_take_ = 0;
  bool slot_full_ = false;
  batch slot_;
  batch spare_;
  std::exception_ptr error_;
  std::thread worker_;
};

}  // namespace trainer
