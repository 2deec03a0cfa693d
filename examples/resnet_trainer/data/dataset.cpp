#include "data/dataset.hpp"

#include <algorithm>
#include <cmath>

#include "data/rng.hpp"

namespace trainer {

void compute_channel_stats(const dataset& d, std::vector<float>& mean, std::vector<float>& std) {
  const std::size_t n = d.size();
  if (n == 0 || d.channels <= 0) throw data_error(d.name + ": cannot compute channel statistics of an empty data set");
  const auto c = static_cast<std::size_t>(d.channels);
  const std::size_t plane = static_cast<std::size_t>(d.height) * static_cast<std::size_t>(d.width);
  // Integer sums are exact (60000*784*255^2 < 2^64), so the result does not
  // depend on summation order.
  std::vector<std::uint64_t> sum(c, 0), sum_sq(c, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* img = d.images.data() + i * c * plane;
    for (std::size_t ch = 0; ch < c; ++ch) {
      std::uint64_t s = 0, s2 = 0;
      for (std::size_t k = 0; k < plane; ++k) {
        const std::uint64_t v = img[ch * plane + k];
        s += v;
        s2 += v * v;
      }
      sum[ch] += s;
      sum_sq[ch] += s2;
    }
  }
  mean.assign(c, 0.0F);
  std.assign(c, 0.0F);
  const double count = static_cast<double>(n) * static_cast<double>(plane);
  for (std::size_t ch = 0; ch < c; ++ch) {
    const double m = static_cast<double>(sum[ch]) / count;
    const double var = std::max(0.0, static_cast<double>(sum_sq[ch]) / count - m * m);
    mean[ch] = static_cast<float>(m / 255.0);
    // A constant channel would divide by zero; 1 leaves it merely centred.
    const double s = std::sqrt(var) / 255.0;
    std[ch] = s > 1e-8 ? static_cast<float>(s) : 1.0F;
  }
}

void validate_dataset(const dataset& d, const std::string& what) {
  if (d.channels <= 0 || d.height <= 0 || d.width <= 0)
    throw data_error(what + ": image dimensions must be positive, found C=" + std::to_string(d.channels) +
                     " H=" + std::to_string(d.height) + " W=" + std::to_string(d.width));
  if (d.num_classes <= 0 || d.num_classes > 256)
    throw data_error(what + ": number of classes must be in [1, 256], found " + std::to_string(d.num_classes));
  if (d.images.size() != d.size() * d.image_size())
    throw data_error(what + ": image buffer holds " + std::to_string(d.images.size()) + " bytes, expected " +
                     std::to_string(d.size()) + " images x " + std::to_string(d.image_size()) + " bytes");
  for (std::size_t i = 0; i < d.labels.size(); ++i)
    if (d.labels[i] >= d.num_classes)
      throw data_error(what + ": label " + std::to_string(d.labels[i]) + " at index " + std::to_string(i) +
                       " is out of range [0, " + std::to_string(d.num_classes) + ")");
  const auto c = static_cast<std::size_t>(d.channels);
  if (d.mean.size() != c || d.std.size() != c)
    throw data_error(what + ": expected " + std::to_string(c) + " per-channel mean/std values, found " +
                     std::to_string(d.mean.size()) + "/" + std::to_string(d.std.size()));
  for (std::size_t ch = 0; ch < c; ++ch)
    if (!std::isfinite(d.mean[ch]) || !std::isfinite(d.std[ch]) || !(d.std[ch] > 0.0F))
      throw data_error(what + ": channel " + std::to_string(ch) + " has mean " + std::to_string(d.mean[ch]) +
                       " and std " + std::to_string(d.std[ch]) + "; std must be finite and positive");
}

dataset take_subset(const dataset& d, std::size_t n, std::uint64_t seed) {
  if (n >= d.size()) return d;
  std::vector<std::size_t> pick = seeded_permutation(d.size(), derive_key(seed, stream_subset));
  pick.resize(n);
  std::sort(pick.begin(), pick.end());
  dataset out;
  out.name = d.name;
  out.channels = d.channels;
  out.height = d.height;
  out.width = d.width;
  out.num_classes = d.num_classes;
  out.mean = d.mean;
  out.std = d.std;
  const std::size_t sz = d.image_size();
  out.images.resize(n * sz);
  out.labels.resize(n);
  for (std::size_t k = 0; k < n; ++k) {
    std::copy_n(d.images.begin() + static_cast<std::ptrdiff_t>(pick[k] * sz), sz,
                out.images.begin() + static_cast<std::ptrdiff_t>(k * sz));
    out.labels[k] = d.labels[pick[k]];
  }
  return out;
}

}  // namespace trainer
