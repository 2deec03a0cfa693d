#include "io/safetensors.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

namespace trainer {
namespace {

struct dtype_row {
  st_dtype t;
  const char* name;
  std::size_t size;
};
constexpr dtype_row dtype_table[] = {
    {st_dtype::BOOL, "BOOL", 1},       {st_dtype::U8, "U8", 1},           {st_dtype::I8, "I8", 1},
    {st_dtype::F8_E5M2, "F8_E5M2", 1}, {st_dtype::F8_E4M3, "F8_E4M3", 1}, {st_dtype::I16, "I16", 2},
    {st_dtype::U16, "U16", 2},         {st_dtype::F16, "F16", 2},         {st_dtype::BF16, "BF16", 2},
    {st_dtype::I32, "I32", 4},         {st_dtype::U32, "U32", 4},         {st_dtype::F32, "F32", 4},
    {st_dtype::F64, "F64", 8},         {st_dtype::I64, "I64", 8},         {st_dtype::U64, "U64", 8},
};

std::string shape_text(const std::vector<std::uint64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// product(shape) * elem, or nullopt on overflow.
std::optional<std::uint64_t> byte_size(const std::vector<std::uint64_t>& shape, std::size_t elem) {
  std::uint64_t n = 1;
  for (const std::uint64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return std::nullopt;
  if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(elem), &n)) return std::nullopt;
  return n;
}

constexpr const char* metadata_key = "__metadata__";

bool is_valid_utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();  // strict: throws type_error 316 on invalid UTF-8
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

}  // namespace

std::size_t dtype_size(st_dtype t) noexcept {
  for (const auto& r : dtype_table)
    if (r.t == t) return r.size;
  return 0;
}

std::string_view dtype_name(st_dtype t) noexcept {
  for (const auto& r : dtype_table)
    if (r.t == t) return r.name;
  return "?";
}

std::optional<st_dtype> parse_dtype(std::string_view name) noexcept {
  for (const auto& r : dtype_table)
    if (name == r.name) return r.t;
  return std::nullopt;
}

std::uint64_t st_tensor::numel() const noexcept {
  std::uint64_t n = 1;
  for (const std::uint64_t d : shape) n *= d;
  return n;
}

void tensor_archive::add(const std::string& name, st_dtype dtype, std::vector<std::uint64_t> shape,
                         std::span<const std::uint8_t> bytes) {
  if (name == metadata_key) throw safetensors_error("tensor name '__metadata__' is reserved by the format");
  if (tensors_.count(name)) throw safetensors_error("duplicate tensor name '" + name + "'");
  // Refused rather than replaced: a renamed tensor would not be found by
  // name when the file is loaded back.
  if (!is_valid_utf8(name))
    throw safetensors_error("tensor name " + dump_json(name) +
                            " is not valid UTF-8 (shown with U+FFFD for the invalid bytes); name tensors in UTF-8");
  const auto want = byte_size(shape, dtype_size(dtype));
  if (!want || *want != bytes.size())
    throw safetensors_error("tensor '" + name + "': " + std::string(dtype_name(dtype)) + " " + shape_text(shape) +
                            " needs " + (want ? std::to_string(*want) : std::string("an overflowing number of")) +
                            " bytes, got " + std::to_string(bytes.size()));
  st_tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.assign(bytes.begin(), bytes.end());
  tensors_.emplace(name, std::move(t));
}

const st_tensor& tensor_archive::at(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) throw safetensors_error("tensor '" + name + "' not found");
  return it->second;
}

const st_tensor& tensor_archive::checked(const std::string& name, st_dtype want,
                                         const std::optional<std::vector<std::uint64_t>>& shape) const {
  const st_tensor& t = at(name);
  if (t.dtype != want)
    throw safetensors_error("tensor '" + name + "' has dtype " + std::string(dtype_name(t.dtype)) + ", expected " +
                            std::string(dtype_name(want)));
  if (shape && *shape != t.shape)
    throw safetensors_error("tensor '" + name + "' has shape " + shape_text(t.shape) + ", expected " +
                            shape_text(*shape));
  return t;
}

namespace {

// Tensors in file order: decreasing alignment, then name (the reference
// implementation's order), so each one starts aligned to its element size.
std::vector<std::pair<const std::string*, const st_tensor*>> file_order(const tensor_archive& a) {
  std::vector<std::pair<const std::string*, const st_tensor*>> v;
  for (const auto& [name, t] : a.tensors()) v.emplace_back(&name, &t);
  std::stable_sort(v.begin(), v.end(), [](const auto& l, const auto& r) {
    if (l.second->dtype != r.second->dtype) return l.second->dtype > r.second->dtype;
    return *l.first < *r.first;
  });
  return v;
}

std::string make_header(const tensor_archive& a) {
  // Built by hand to keep the entries in data order (nlohmann's object would
  // sort the keys); nlohmann does the string escaping.
  std::string h = "{";
  bool first = true;
  if (!a.metadata.empty()) {
    h += std::string("\"") + metadata_key + "\":{";
    // Two keys that differ only in invalid bytes would become duplicates,
    // which readers reject; refuse to write such a header.
    std::set<std::string> keys;
    for (const auto& [k, v] : a.metadata) {
      const std::string key = dump_json(k);
      if (!keys.insert(key).second)
        throw safetensors_error("metadata keys collide once their invalid UTF-8 bytes are replaced: " + key +
                                "; use UTF-8 metadata keys");
      h += (keys.size() > 1 ? "," : "") + key + ":" + dump_json(v);
    }
    h += "}";
    first = false;
  }
  std::uint64_t offset = 0;
  for (const auto& [name, t] : file_order(a)) {
    if (!first) h += ",";
    first = false;
    h += dump_json(*name) + ":{\"dtype\":\"" + std::string(dtype_name(t->dtype)) + "\",\"shape\":[";
    for (std::size_t i = 0; i < t->shape.size(); ++i) {
      if (i) h += ',';
      h += std::to_string(t->shape[i]);
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t->bytes.size()) + "]}";
    offset += t->bytes.size();
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');
  if (h.size() > safetensors_max_header)
    throw safetensors_error("safetensors header would be " + std::to_string(h.size()) + " bytes, over the " +
                            std::to_string(safetensors_max_header) + "-byte limit readers accept");
  return h;
}

}  // namespace

void write_safetensors(file_sink& sink, const tensor_archive& a) {
  const std::string h = make_header(a);
  std::uint8_t len[8];
  const std::uint64_t n = h.size();
  std::memcpy(len, &n, 8);  // little-endian host (static_assert in the header)
  sink.write(len, 8);
  sink.write(h.data(), h.size());
  for (const auto& [name, t] : file_order(a)) sink.write(t->bytes.data(), t->bytes.size());
}

std::vector<std::uint8_t> serialize_safetensors(const tensor_archive& a) {
  const std::string h = make_header(a);
  const auto order = file_order(a);
  std::size_t total = 8 + h.size();
  for (const auto& [name, t] : order) total += t->bytes.size();
  std::vector<std::uint8_t> out(total);
  const std::uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, h.data(), h.size());
  std::size_t pos = 8 + h.size();
  for (const auto& [name, t] : order) {
    if (!t->bytes.empty()) std::memcpy(out.data() + pos, t->bytes.data(), t->bytes.size());
    pos += t->bytes.size();
  }
  return out;
}

tensor_archive parse_safetensors(std::span<const std::uint8_t> file, const std::string& source) {
  const auto bad = [&](const std::string& what) { return safetensors_error(source + ": " + what); };
  if (file.size() < 8)
    throw bad("file is " + std::to_string(file.size()) +
              " bytes, too short for the 8-byte header length; the file is truncated or not safetensors");
  std::uint64_t n = 0;
  std::memcpy(&n, file.data(), 8);
  if (n > safetensors_max_header)
    throw bad("header length " + std::to_string(n) + " exceeds the " + std::to_string(safetensors_max_header) +
              "-byte limit; the file is corrupt or not safetensors");
  if (n > file.size() - 8)
    throw bad("header length " + std::to_string(n) + " runs past the end of the file (" +
              std::to_string(file.size() - 8) + " bytes follow the length); the file is truncated");
  if (n < 2) throw bad("header length " + std::to_string(n) + " is too small for a JSON object");
  const auto* hb = reinterpret_cast<const char*>(file.data() + 8);
  if (hb[0] != '{') throw bad("header does not start with '{'; the file is corrupt or not safetensors");
  // nlohmann's lexer stops at a NUL byte and would ignore what follows; raw
  // NULs are never valid JSON, so refuse them outright.
  if (const void* nul = std::memchr(hb, 0, n))
    throw bad("header is not valid UTF-8 JSON (NUL byte at header offset " +
              std::to_string(static_cast<const char*>(nul) - hb) + ")");

  // Duplicate keys are disallowed by the format, but a JSON parser keeps the
  // last one silently; track the keys of every open object.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  nlohmann::json header;
  try {
    header =
        nlohmann::json::parse(hb, hb + n, [&](int /*depth*/, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
          using ev_t = nlohmann::json::parse_event_t;
          if (ev == ev_t::object_start) {
            open_objects.emplace_back();
          } else if (ev == ev_t::object_end) {
            if (!open_objects.empty()) open_objects.pop_back();
          } else if (ev == ev_t::key && !open_objects.empty()) {
            const auto key = parsed.get<std::string>();
            if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
          }
          return true;
        });
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("header is not valid UTF-8 JSON (") + e.what() + ")");
  }
  if (!duplicate.empty()) throw bad("duplicate key '" + duplicate + "' in the header");
  if (!header.is_object()) throw bad("header is not a JSON object");

  struct entry {
    std::string name;
    st_dtype dtype;
    std::vector<std::uint64_t> shape;
    std::uint64_t begin, end;
  };
  std::vector<entry> entries;
  tensor_archive out;
  for (const auto& [key, value] : header.items()) {
    if (key == metadata_key) {
      if (!value.is_object()) throw bad("__metadata__ must be an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          throw bad("__metadata__ value for '" + mk + "' is not a string (found " + std::string(mv.type_name()) + ")");
        out.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + key + "'";
    if (!value.is_object()) throw bad(where + ": entry is not an object");
    for (const auto& [field, _] : value.items())
      if (field != "dtype" && field != "shape" && field != "data_offsets")
        throw bad(where + ": unexpected field '" + field + "' (expected dtype, shape, data_offsets)");
    if (!value.contains("dtype") || !value["dtype"].is_string()) throw bad(where + ": missing string field 'dtype'");
    const auto dt = parse_dtype(value["dtype"].get<std::string>());
    if (!dt) throw bad(where + ": unknown dtype '" + value["dtype"].get<std::string>() + "'");
    if (!value.contains("shape") || !value["shape"].is_array()) throw bad(where + ": missing array field 'shape'");
    entry e{key, *dt, {}, 0, 0};
    for (const auto& d : value["shape"]) {
      if (!d.is_number_unsigned()) throw bad(where + ": shape entries must be non-negative integers");
      e.shape.push_back(d.get<std::uint64_t>());
    }
    const auto& off = value.contains("data_offsets") ? value["data_offsets"] : nlohmann::json();
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw bad(where + ": 'data_offsets' must be [begin, end] with non-negative integers");
    e.begin = off[0].get<std::uint64_t>();
    e.end = off[1].get<std::uint64_t>();
    if (e.end < e.begin)
      throw bad(where + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                "] end before they begin");
    const auto want = byte_size(e.shape, dtype_size(e.dtype));
    if (!want) throw bad(where + ": shape " + shape_text(e.shape) + " overflows");
    if (*want != e.end - e.begin)
      throw bad(where + ": " + std::string(dtype_name(e.dtype)) + " " + shape_text(e.shape) + " needs " +
                std::to_string(*want) + " bytes but data_offsets span " + std::to_string(e.end - e.begin));
    entries.push_back(std::move(e));
  }

  // The tensors must tile [0, data size) exactly: no gap, no overlap, no tail.
  std::sort(entries.begin(), entries.end(),
            [](const entry& l, const entry& r) { return std::tie(l.begin, l.end) < std::tie(r.begin, r.end); });
  const std::uint64_t data_size = file.size() - 8 - n;
  std::uint64_t pos = 0;
  for (const auto& e : entries) {
    if (e.begin != pos)
      throw bad("tensor '" + e.name + "': data_offsets begin at " + std::to_string(e.begin) + ", expected " +
                std::to_string(pos) + (e.begin < pos ? " (overlaps the previous tensor)" : " (leaves a gap)"));
    if (e.end > data_size)
      throw bad("tensor '" + e.name + "': data_offsets end at " + std::to_string(e.end) + " but the data buffer has " +
                std::to_string(data_size) + " bytes; the file is truncated");
    pos = e.end;
  }
  if (pos != data_size)
    throw bad("data buffer has " + std::to_string(data_size) + " bytes but the tensors cover " + std::to_string(pos) +
              " (trailing bytes)");
  const std::uint8_t* data = file.data() + 8 + n;
  for (auto& e : entries)
    out.add(e.name, e.dtype, std::move(e.shape),
            std::span<const std::uint8_t>(data + e.begin, static_cast<std::size_t>(e.end - e.begin)));
  return out;
}

void save_safetensors(const std::filesystem::path& path, const tensor_archive& a) {
  write_file_atomic(path, [&](file_sink& s) { write_safetensors(s, a); });
}

tensor_archive load_safetensors(const std::filesystem::path& path) {
  const std::vector<std::uint8_t> bytes = read_whole_file(path);
  return parse_safetensors(bytes, quoted(path));
}

}  // namespace trainer
