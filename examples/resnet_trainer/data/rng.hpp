// Counter-based randomness for the data pipeline. Every random choice is a
// pure function of (seed, stream tags, counter), so the order and the
// augmentation of epoch e are the same whether a run is fresh or resumed,
// and whatever thread prepares the batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

namespace trainer {

// splitmix64 finaliser: a bijective mix of a 64-bit counter.
[[nodiscard]] constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Derives an independent stream key from a parent key and a tag (an epoch, a
// sample index, a purpose constant).
[[nodiscard]] constexpr std::uint64_t derive_key(std::uint64_t parent, std::uint64_t tag) noexcept {
  return splitmix64(parent ^ splitmix64(tag + 0x632BE59BD9B4E019ULL));
}

// Purpose tags, so that e.g. the shuffle of epoch 3 and the crop of sample 3
// never share a stream.
inline constexpr std::uint64_t stream_shuffle = 0x5348554646ULL;  // "SHUFF"
inline constexpr std::uint64_t stream_augment = 0x4155474DULL;    // "AUGM"
inline constexpr std::uint64_t stream_subset = 0x53554253ULL;     // "SUBS"

// A tiny generator over one stream: value i is splitmix64(key + i).
class counter_rng {
 public:
  explicit constexpr counter_rng(std::uint64_t key) noexcept : key_(key) {}
  constexpr std::uint64_t next() noexcept { return splitmix64(key_ + counter_++); }
  // Uniform integer in [0, n), n > 0. Rejecting the first 2^64 mod n values
  // removes the modulo bias.
  constexpr std::uint64_t below(std::uint64_t n) noexcept {
    const std::uint64_t threshold = (0 - n) % n;
    for (;;) {
      const std::uint64_t x = next();
      if (x >= threshold) return x % n;
    }
  }

 private:
  std::uint64_t key_;
  std::uint64_t counter_ = 0;
};

// Fisher-Yates permutation of [0, n) from the given stream key.
[[nodiscard]] inline std::vector<std::size_t> seeded_permutation(std::size_t n, std::uint64_t key) {
  std::vector<std::size_t> p(n);
  std::iota(p.begin(), p.end(), std::size_t{0});
  counter_rng rng(key);
  for (std::size_t i = n; i > 1; --i) {
    const auto j = static_cast<std::size_t>(rng.below(i));
    std::swap(p[i - 1], p[j]);
  }
  return p;
}

// The visiting order of epoch `epoch` for a data set of n samples.
[[nodiscard]] inline std::vector<std::size_t> epoch_order(std::size_t n, std::uint64_t seed, std::uint64_t epoch) {
  return seeded_permutation(n, derive_key(derive_key(seed, stream_shuffle), epoch));
}

}  // namespace trainer
