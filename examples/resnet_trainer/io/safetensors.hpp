// Reader and writer for the safetensors format (huggingface/safetensors):
//
//   8 bytes     N, little-endian uint64: size of the JSON header
//   N bytes     UTF-8 JSON object: for each tensor
//                 "name": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}
//               plus an optional "__metadata__": {"key": "value", ...} (strings only).
//               Offsets are relative to the start of the data buffer.
//   rest        data buffer: the tensors, little-endian, C order, packed
//
// The writer follows the reference implementation: tensors sorted by
// decreasing dtype alignment, then by name; the header padded with spaces to
// a multiple of 8 bytes, so every tensor starts aligned to its element size.
// The reader is strict (like the reference, plus duplicate-key detection):
// header size within bounds and the file, valid UTF-8 JSON object starting
// with '{', no duplicate keys, known dtypes, unsigned integer shapes and
// offsets, byte size = product(shape) x dtype size without overflow, and the
// tensors tile the data buffer exactly — no gaps, no overlaps, nothing after.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "io/atomic_file.hpp"

namespace trainer {

// JSON text for files, metadata, headers and stdout. Paths are bytes on POSIX
// and may not be UTF-8 (an --output like $'u\xe9'); nlohmann's strict dump
// would throw type_error 316 after the work is done, so invalid bytes become
// U+FFFD. Every JSON dump of psap-train goes through this.
[[nodiscard]] inline std::string dump_json(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

static_assert(std::endian::native == std::endian::little,
              "the safetensors reader/writer copies raw little-endian bytes");

class safetensors_error : public io_error {
 public:
  using io_error::io_error;
};

// In increasing alignment, the reference's order (the writer sorts on it).
enum class st_dtype : std::uint8_t {
  BOOL,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64
};

[[nodiscard]] std::size_t dtype_size(st_dtype t) noexcept;
[[nodiscard]] std::string_view dtype_name(st_dtype t) noexcept;
[[nodiscard]] std::optional<st_dtype> parse_dtype(std::string_view name) noexcept;

template <class T>
constexpr st_dtype dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return st_dtype::F32;
  else if constexpr (std::is_same_v<T, double>)
    return st_dtype::F64;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return st_dtype::I64;
  else if constexpr (std::is_same_v<T, std::uint64_t>)
    return st_dtype::U64;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return st_dtype::I32;
  else if constexpr (std::is_same_v<T, std::uint32_t>)
    return st_dtype::U32;
  else if constexpr (std::is_same_v<T, std::int16_t>)
    return st_dtype::I16;
  else if constexpr (std::is_same_v<T, std::uint16_t>)
    return st_dtype::U16;
  else if constexpr (std::is_same_v<T, std::int8_t>)
    return st_dtype::I8;
  else if constexpr (std::is_same_v<T, std::uint8_t>)
    return st_dtype::U8;
  else
    static_assert(sizeof(T) == 0, "no safetensors dtype for this element type");
}

struct st_tensor {
  st_dtype dtype = st_dtype::F32;
  std::vector<std::uint64_t> shape;  // [] = scalar
  std::vector<std::uint8_t> bytes;   // numel() * dtype_size(dtype)

  [[nodiscard]] std::uint64_t numel() const noexcept;
};

// A set of named tensors plus the string->string metadata map.
class tensor_archive {
 public:
  std::map<std::string, std::string> metadata;

  // Adds a tensor; throws safetensors_error for a duplicate, reserved or
  // non-UTF-8 name, or when bytes.size() != product(shape) * dtype_size(dtype).
  void add(const std::string& name, st_dtype dtype, std::vector<std::uint64_t> shape,
           std::span<const std::uint8_t> bytes);
  template <class T>
  void add(const std::string& name, std::vector<std::uint64_t> shape, std::span<const T> values) {
    add(name, dtype_of<T>(), std::move(shape),
        std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(values.data()), values.size_bytes()));
  }
  template <class T>
  void add(const std::string& name, std::vector<std::uint64_t> shape, const std::vector<T>& values) {
    add<T>(name, std::move(shape), std::span<const T>(values));
  }

  [[nodiscard]] bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws safetensors_error naming the missing tensor.
  [[nodiscard]] const st_tensor& at(const std::string& name) const;
  [[nodiscard]] const std::map<std::string, st_tensor>& tensors() const noexcept { return tensors_; }
  void erase(const std::string& name) { tensors_.erase(name); }

  // The values of tensor `name`, which must have dtype_of<T>() and, when
  // given, exactly `expected_shape`; otherwise safetensors_error naming the
  // tensor, what was expected and what was found.
  template <class T>
  [[nodiscard]] std::vector<T> values(const std::string& name,
                                      const std::optional<std::vector<std::uint64_t>>& expected_shape = {}) const {
    const st_tensor& t = checked(name, dtype_of<T>(), expected_shape);
    std::vector<T> out(t.bytes.size() / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
    return out;
  }
  // Copies tensor `name` into `dst`, whose size must equal its element count.
  template <class T>
  void copy_to(const std::string& name, std::span<T> dst,
               const std::optional<std::vector<std::uint64_t>>& expected_shape = {}) const {
    const st_tensor& t = checked(name, dtype_of<std::remove_const_t<T>>(), expected_shape);
    if (t.bytes.size() != dst.size_bytes())
      throw safetensors_error("tensor '" + name + "' has " + std::to_string(t.numel()) +
                              " elements, the destination expects " + std::to_string(dst.size()));
    if (!dst.empty()) std::memcpy(dst.data(), t.bytes.data(), t.bytes.size());
  }

 private:
  const st_tensor& checked(const std::string& name, st_dtype want,
                           const std::optional<std::vector<std::uint64_t>>& shape) const;
  std::map<std::string, st_tensor> tensors_;
};

// Largest accepted header (the reference implementation's limit).
inline constexpr std::uint64_t safetensors_max_header = 100'000'000;

// Writes the archive in safetensors layout to `sink`. Metadata bytes that are
// not valid UTF-8 are written as U+FFFD, so the header stays valid JSON.
void write_safetensors(file_sink& sink, const tensor_archive& a);
// The complete file image in memory.
[[nodiscard]] std::vector<std::uint8_t> serialize_safetensors(const tensor_archive& a);
// Parses and validates a complete file image; `source` names it in errors.
[[nodiscard]] tensor_archive parse_safetensors(std::span<const std::uint8_t> file, const std::string& source);

// Atomic save (write_file_atomic) and load of a .safetensors file.
void save_safetensors(const std::filesystem::path& path, const tensor_archive& a);
[[nodiscard]] tensor_archive load_safetensors(const std::filesystem::path& path);

}  // namespace trainer
