#include "data/loader.hpp"

#include "data/rng.hpp"

namespace trainer {

batch_loader::batch_loader(const dataset& data, loader_config cfg) : data_(data), cfg_(std::move(cfg)) {
  validate_dataset(data_, data_.name.empty() ? std::string("data set") : data_.name);
  if (data_.size() == 0) throw data_error(data_.name + ": data set is empty");
  if (cfg_.batch_size == 0) throw data_error("batch size must be at least 1");
  if (cfg_.augment.pad < 0 || cfg_.augment.pad > std::min(data_.height, data_.width))
    throw data_error("crop padding " + std::to_string(cfg_.augment.pad) + " must be in [0, " +
                     std::to_string(std::min(data_.height, data_.width)) + "] for " + std::to_string(data_.height) +
                     "x" + std::to_string(data_.width) + " images");
  shape_ = {data_.channels, data_.height, data_.width};
  const std::size_t n = data_.size();
  batches_ = cfg_.drop_last ? n / cfg_.batch_size : (n + cfg_.batch_size - 1) / cfg_.batch_size;
  if (batches_ == 0)
    throw data_error(data_.name + ": " + std::to_string(n) + " samples make no full batch of " +
                     std::to_string(cfg_.batch_size) + "; lower the batch size or disable drop-last");
  if (cfg_.background) worker_ = std::thread([this] { worker_main(); });
}

batch_loader::~batch_loader() {
  {
    const std::lock_guard lk(m_);
    stop_ = true;
  }
  worker_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

std::size_t batch_loader::samples_per_epoch() const noexcept {
  return cfg_.drop_last ? batches_ * cfg_.batch_size : data_.size();
}

void batch_loader::fill(std::uint64_t epoch, const std::vector<std::size_t>& order, std::size_t k, batch& out) const {
  const std::size_t begin = k * cfg_.batch_size;
  const std::size_t end = std::min(begin + cfg_.batch_size, order.size());
  const std::size_t n = end - begin;
  const std::size_t sz = shape_.size();
  out.shape = shape_;
  out.size = n;
  out.epoch = epoch;
  out.index = k;
  out.images.resize(n * sz);
  out.labels.resize(n);
  out.indices.resize(n);
  for (std::size_t r = 0; r < n; ++r) {
    const std::size_t idx = order[begin + r];
    const augment_draw d = draw_augment(cfg_.augment, cfg_.seed, epoch, idx);
    transform_sample(data_.image(idx), std::span<float>(out.images.data() + r * sz, sz), shape_, cfg_.augment.pad, d,
                     data_.mean, data_.std);
    out.labels[r] = data_.labels[idx];
    out.indices[r] = idx;
  }
  if (cfg_.post_process) cfg_.post_process(out);
}

std::vector<std::size_t> batch_loader::order_for(std::uint64_t epoch) const {
  if (cfg_.shuffle) return epoch_order(data_.size(), cfg_.seed, epoch);
  std::vector<std::size_t> order(data_.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  return order;
}

void batch_loader::make_batch(std::uint64_t epoch, std::size_t k, batch& out) const {
  if (k >= batches_)
    throw data_error("batch " + std::to_string(k) + " requested, but an epoch has " + std::to_string(batches_));
  fill(epoch, order_for(epoch), k, out);
}

void batch_loader::start_epoch(std::uint64_t epoch, std::size_t first_batch) {
  if (first_batch > batches_)
    throw data_error("cannot start epoch at batch " + std::to_string(first_batch) + ": an epoch has " +
                     std::to_string(batches_) + " batches");
  std::vector<std::size_t> order = order_for(epoch);
  {
    const std::lock_guard lk(m_);
    ++generation_;
    started_ = true;
    epoch_ = epoch;
    order_ = std::make_shared<const std::vector<std::size_t>>(std::move(order));
    next_to_make_ = first_batch;
    next_to_take_ = first_batch;
    slot_full_ = false;
    error_ = nullptr;
  }
  worker_cv_.notify_all();
}

bool batch_loader::next(batch& out) {
  std::unique_lock lk(m_);
  if (!started_) throw data_error("batch_loader::next() called before start_epoch()");
  if (error_) std::rethrow_exception(error_);
  if (next_to_take_ >= batches_) return false;
  if (!cfg_.background) {
    const auto order = order_;
    const std::uint64_t epoch = epoch_;
    const std::size_t k = next_to_take_;
    lk.unlock();
    fill(epoch, *order, k, out);
    lk.lock();
    ++next_to_take_;
    return true;
  }
  consumer_cv_.wait(lk, [&] { return slot_full_ || error_ != nullptr; });
  if (error_) std::rethrow_exception(error_);
  std::swap(out, slot_);
  spare_ = std::move(slot_);  // the caller's old buffers, reused for a later batch
  slot_full_ = false;
  ++next_to_take_;
  lk.unlock();
  worker_cv_.notify_one();
  return true;
}

void batch_loader::worker_main() {
  std::unique_lock lk(m_);
  for (;;) {
    worker_cv_.wait(lk, [&] { return stop_ || (started_ && !slot_full_ && !error_ && next_to_make_ < batches_); });
    if (stop_) return;
    const std::uint64_t gen = generation_;
    const std::uint64_t epoch = epoch_;
    const std::size_t k = next_to_make_;
    const auto order = order_;
    batch b = std::move(spare_);
    lk.unlock();
    std::exception_ptr err;
    try {
      fill(epoch, *order, k, b);
    } catch (...) {
      err = std::current_exception();
    }
    lk.lock();
    if (gen != generation_) {  // start_epoch() moved on while we worked
      spare_ = std::move(b);
      continue;
    }
    if (err) {
      error_ = err;
    } else {
      slot_ = std::move(b);
      slot_full_ = true;
      ++next_to_make_;
    }
    consumer_cv_.notify_all();
  }
}

}  // namespace trainer
