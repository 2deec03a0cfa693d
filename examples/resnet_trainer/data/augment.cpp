#include "data/augment.hpp"

#include <algorithm>

#include "data/rng.hpp"

namespace trainer {

augment_draw draw_augment(const augment_config& cfg, std::uint64_t seed, std::uint64_t epoch,
                          std::uint64_t sample) noexcept {
  augment_draw d;
  d.dy = cfg.pad;
  d.dx = cfg.pad;
  if (cfg.pad <= 0 && !cfg.flip) return d;
  counter_rng rng(derive_key(derive_key(derive_key(seed, stream_augment), epoch), sample));
  // Draw all three whether used or not, so enabling one transform does not
  // change the other's stream.
  const auto span = static_cast<std::uint64_t>(2 * std::max(cfg.pad, 0) + 1);
  const auto dy = static_cast<int>(rng.below(span));
  const auto dx = static_cast<int>(rng.below(span));
  const bool flip = (rng.next() >> 63) != 0;
  if (cfg.pad > 0) {
    d.dy = dy;
    d.dx = dx;
  } else {
    d.dy = d.dx = 0;
  }
  d.flip = cfg.flip && flip;
  return d;
}

void pad_crop(std::span<const std::uint8_t> src, std::span<std::uint8_t> dst, const image_shape& s, int pad, int dy,
              int dx) noexcept {
  for (int c = 0; c < s.channels; ++c)
    for (int y = 0; y < s.height; ++y)
      for (int x = 0; x < s.width; ++x) {
        const int sy = y + dy - pad;
        const int sx = x + dx - pad;
        const bool inside = sy >= 0 && sy < s.height && sx >= 0 && sx < s.width;
        dst[static_cast<std::size_t>(c) * s.plane() + static_cast<std::size_t>(y * s.width + x)] =
            inside ? src[static_cast<std::size_t>(c) * s.plane() + static_cast<std::size_t>(sy * s.width + sx)] : 0;
      }
}

void flip_horizontal(std::span<std::uint8_t> img, const image_shape& s) noexcept {
  for (int c = 0; c < s.channels; ++c)
    for (int y = 0; y < s.height; ++y) {
      auto row = img.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(c) * s.plane() +
                                                           static_cast<std::size_t>(y * s.width));
      std::reverse(row, row + s.width);
    }
}

void normalize_image(std::span<const std::uint8_t> src, std::span<float> dst, const image_shape& s,
                     std::span<const float> mean, std::span<const float> std) noexcept {
  for (int c = 0; c < s.channels; ++c) {
    const float scale = 1.0F / (255.0F * std[static_cast<std::size_t>(c)]);
    const float bias = -mean[static_cast<std::size_t>(c)] / std[static_cast<std::size_t>(c)];
    const std::size_t off = static_cast<std::size_t>(c) * s.plane();
    for (std::size_t k = 0; k < s.plane(); ++k) dst[off + k] = static_cast<float>(src[off + k]) * scale + bias;
  }
}

void transform_sample(std::span<const std::uint8_t> src, std::span<float> dst, const image_shape& s, int pad,
                      const augment_draw& d, std::span<const float> mean, std::span<const float> std) noexcept {
  for (int c = 0; c < s.channels; ++c) {
    // Same expression as normalize_image(), so fused and separate paths agree bitwise.
    const float scale = 1.0F / (255.0F * std[static_cast<std::size_t>(c)]);
    const float bias = -mean[static_cast<std::size_t>(c)] / std[static_cast<std::size_t>(c)];
    const std::size_t off = static_cast<std::size_t>(c) * s.plane();
    for (int y = 0; y < s.height; ++y) {
      const int sy = y + d.dy - pad;
      for (int x = 0; x < s.width; ++x) {
        const int cx = d.flip ? s.width - 1 - x : x;  // flip after crop: read the mirrored crop column
        const int sx = cx + d.dx - pad;
        const bool inside = sy >= 0 && sy < s.height && sx >= 0 && sx < s.width;
        const std::uint8_t v = inside ? src[off + static_cast<std::size_t>(sy * s.width + sx)] : 0;
        dst[off + static_cast<std::size_t>(y * s.width + x)] = static_cast<float>(v) * scale + bias;
      }
    }
  }
}

}  // namespace trainer
