// In-memory image classification data set: uint8 images N x C x H x W,
// one label per image, and the per-channel statistics used to normalise it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace trainer {

// Every problem with input data (missing, truncated or corrupt files, bad
// options) is reported with this type; the message names the file, what was
// expected, what was found and how to fix it.
class data_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct dataset {
  std::string name;  // "fashion-mnist/train", ...
  int channels = 0;
  int height = 0;
  int width = 0;
  int num_classes = 0;
  std::vector<std::uint8_t> images;  // size() * channels * height * width, NCHW
  std::vector<std::uint8_t> labels;  // one per image, < num_classes
  // Per-channel statistics of pixel/255, from the training set (or standard
  // constants); the test set carries the training set's values.
  std::vector<float> mean;
  std::vector<float> std;

  [[nodiscard]] std::size_t size() const noexcept { return labels.size(); }
  [[nodiscard]] std::size_t image_size() const noexcept {
    return static_cast<std::size_t>(channels) * static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
  }
  [[nodiscard]] std::span<const std::uint8_t> image(std::size_t i) const noexcept {
    return {images.data() + i * image_size(), image_size()};
  }
};

struct dataset_pair {
  dataset train;
  dataset test;
};

// Per-channel mean and standard deviation of pixel/255 over the whole set.
// Throws data_error for an empty set.
void compute_channel_stats(const dataset& d, std::vector<float>& mean, std::vector<float>& std);

// Checks the invariants above (sizes agree, labels in range, stats sized);
// `what` names the source in the error message.
void validate_dataset(const dataset& d, const std::string& what);

// A fixed, seeded subset of n images (n >= size() returns a copy). The chosen
// indices are a pure function of (seed, size(), n) and kept in ascending
// order, so class balance follows the source and runs are repeatable.
[[nodiscard]] dataset take_subset(const dataset& d, std::size_t n, std::uint64_t seed);

}  // namespace trainer
