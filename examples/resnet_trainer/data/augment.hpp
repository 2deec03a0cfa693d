// Per-sample transforms: zero-pad-and-random-crop, horizontal flip and
// per-channel normalisation of uint8 CHW images into float CHW.
//
// The random parameters of a sample are drawn from a counter-based stream
// keyed by (seed, epoch, sample index), so they do not depend on which batch
// or thread processes the sample, nor on whether the run was resumed.
#pragma once

#include <cstdint>
#include <span>

namespace trainer {

struct augment_config {
  int pad = 0;        // zero padding on each side before the random crop (0 = no crop)
  bool flip = false;  // random horizontal flip with probability 1/2
};

struct image_shape {
  int channels = 0;
  int height = 0;
  int width = 0;
  [[nodiscard]] std::size_t plane() const noexcept {
    return static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
  }
  [[nodiscard]] std::size_t size() const noexcept { return static_cast<std::size_t>(channels) * plane(); }
};

// One sample's draw: crop offset (dy, dx) into the padded image, each in
// [0, 2*pad] (pad, pad = centre = no shift), and whether to flip.
struct augment_draw {
  int dy = 0;
  int dx = 0;
  bool flip = false;
};

[[nodiscard]] augment_draw draw_augment(const augment_config& cfg, std::uint64_t seed, std::uint64_t epoch,
                                        std::uint64_t sample) noexcept;

// dst = crop of src zero-padded by `pad`, at offset (dy, dx) of the padded
// image; same shape as src. pad = 0 (so dy = dx = 0) copies.
void pad_crop(std::span<const std::uint8_t> src, std::span<std::uint8_t> dst, const image_shape& s, int pad, int dy,
              int dx) noexcept;

// Mirrors every row in place.
void flip_horizontal(std::span<std::uint8_t> img, const image_shape& s) noexcept;

// dst = (src / 255 - mean[c]) / std[c].
void normalize_image(std::span<const std::uint8_t> src, std::span<float> dst, const image_shape& s,
                     std::span<const float> mean, std::span<const float> std) noexcept;

// Fused pad_crop + flip + normalize in one pass (what the loader uses); equal
// to applying the three in that order.
void transform_sample(std::span<const std::uint8_t> src, std::span<float> dst, const image_shape& s, int pad,
                      const augment_draw& d, std::span<const float> mean, std::span<const float> std) noexcept;

}  // namespace trainer
