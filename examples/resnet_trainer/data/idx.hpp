// IDX files (the MNIST / Fashion-MNIST container), plain or gzip-compressed.
//
// Layout: two zero bytes, an element-type byte (0x08 = unsigned byte, the
// only type these data sets use), a rank byte, `rank` big-endian uint32
// dimensions, then the elements in row-major order.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data/dataset.hpp"

namespace trainer {

// Whole file as bytes; data_error naming the file if it cannot be opened/read.
[[nodiscard]] std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path);

// True when the buffer starts with the gzip magic 1f 8b.
[[nodiscard]] bool is_gzip(std::span<const std::uint8_t> bytes) noexcept;

// Most gzip content accepted for one data file: far above the largest
// MNIST-family file (EMNIST ByClass images, ~550 MB; MNIST's, 47 MB), yet it
// keeps a decompression bomb from exhausting memory.
inline constexpr std::size_t gunzip_max_output = std::size_t{1} << 30;

// Reports the exact size of the content once its first bytes (all the output
// so far) reveal it, e.g. from a file header; nullopt while they do not yet.
// It may throw data_error for a malformed header.
using declared_size_fn = std::function<std::optional<std::size_t>(std::span<const std::uint8_t> prefix)>;

// Inflates a gzip buffer (one or more concatenated members). Truncated
// streams, CRC/length mismatches and trailing garbage throw data_error naming
// `source`. Output beyond `max_output` bytes, or beyond the size
// `declared_size` reports, is refused as soon as it is produced (a corrupt
// file, or a decompression bomb).
[[nodiscard]] std::vector<std::uint8_t> gunzip(std::span<const std::uint8_t> bytes, const std::string& source,
                                               std::size_t max_output = gunzip_max_output,
                                               const declared_size_fn& declared_size = {});

// read_file_bytes, inflated when the content starts with the gzip magic
// (detected by content, not by the file name).
[[nodiscard]] std::vector<std::uint8_t> read_maybe_gzip(const std::filesystem::path& path);

struct idx_array {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> data;
};

// Parses an IDX buffer of unsigned bytes. `source` names the file in errors.
[[nodiscard]] idx_array parse_idx(std::span<const std::uint8_t> bytes, const std::string& source);
// Header plus data size that the IDX header at the start of `prefix`
// declares; nullopt while `prefix` is shorter than the header. A malformed
// header throws parse_idx's data_error.
[[nodiscard]] std::optional<std::size_t> idx_declared_size(std::span<const std::uint8_t> prefix,
                                                           const std::string& source);
// A plain or gzip IDX file; gzip content is inflated no further than the size
// its IDX header declares.
[[nodiscard]] idx_array read_idx(const std::filesystem::path& path);

struct idx_expectations {
  int num_classes = 10;
  std::optional<std::uint32_t> rows;  // e.g. 28 for (Fashion-)MNIST
  std::optional<std::uint32_t> cols;
};

// An images file (rank 3: N x rows x cols) and its labels file (rank 1: N)
// as a one-channel data set; mean/std are left empty for the caller.
[[nodiscard]] dataset load_idx_dataset(const std::filesystem::path& images, const std::filesystem::path& labels,
                                       std::string name, const idx_expectations& expect = {});

// The four files of an (Fashion-)MNIST directory: {train,t10k}-{images-idx3,
// labels-idx1}-ubyte, each plain or with .gz (the dotted variant
// train-images.idx3-ubyte is accepted too). `hint` is appended to the
// "missing file" error, e.g. "install dataset-fashion-mnist or pass
// --data fashion-mnist DIR". mean/std come from the training set.
[[nodiscard]] dataset_pair load_idx_directory(const std::filesystem::path& dir, const std::string& name,
                                              std::string_view hint, const idx_expectations& expect = {});

}  // namespace trainer
