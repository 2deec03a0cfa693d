#include "data/idx.hpp"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <sstream>

namespace trainer {
namespace {

std::string quoted(const std::filesystem::path& p) {
  std::string s = "'";
  s += p.string();
  s += '\'';
  return s;
}

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

struct file_closer {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

}  // namespace

std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw data_error(quoted(path) + ": expected a file, found a directory");
  std::unique_ptr<std::FILE, file_closer> f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    const int err = errno;
    throw data_error(quoted(path) + ": cannot open (" + std::strerror(err) + ")");
  }
  std::vector<std::uint8_t> out;
  std::uint8_t buf[1 << 16];
  try {
    for (;;) {
      const std::size_t got = std::fread(buf, 1, sizeof buf, f.get());
      out.insert(out.end(), buf, buf + got);
      if (got < sizeof buf) {
        if (std::ferror(f.get())) {
          const int err = errno;
          throw data_error(quoted(path) + ": read error after " + std::to_string(out.size()) + " bytes (" +
                           std::strerror(err) + ")");
        }
        break;
      }
    }
  } catch (const std::bad_alloc&) {
    throw data_error(quoted(path) + ": not enough memory to read the file (" + std::to_string(out.size()) +
                     " bytes read so far)");
  }
  return out;
}

bool is_gzip(std::span<const std::uint8_t> bytes) noexcept {
  return bytes.size() >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B;
}

std::vector<std::uint8_t> gunzip(std::span<const std::uint8_t> bytes, const std::string& source,
                                 std::size_t max_output, const declared_size_fn& declared_size) {
  if (!is_gzip(bytes)) throw data_error(source + ": not gzip data (expected magic bytes 1f 8b)");
  z_stream zs{};
  // 16 + MAX_WBITS: gzip wrapper only, so the header and CRC32/ISIZE trailer
  // are checked by zlib.
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw data_error(source + ": cannot initialise zlib");
  struct guard {
    z_stream* z;
    ~guard() { inflateEnd(z); }
  } g{&zs};

  std::vector<std::uint8_t> out;
  // The ISIZE trailer (size mod 2^32) is a hint for the first allocation only.
  if (bytes.size() >= 18) {
    const std::size_t n = bytes.size();
    const std::uint32_t isize = std::uint32_t{bytes[n - 4]} | std::uint32_t{bytes[n - 3]} << 8 |
                                std::uint32_t{bytes[n - 2]} << 16 | std::uint32_t{bytes[n - 1]} << 24;
    out.reserve(std::min<std::size_t>(isize, std::min<std::size_t>(max_output, std::size_t{1} << 30)));
  }
  std::optional<std::size_t> declared;  // once declared_size knows it
  std::size_t in_pos = 0;
  std::size_t members = 0;
  for (;;) {
    // A member starts here; zlib's avail_in is 32-bit, so feed in chunks.
    int rc = Z_OK;
    do {
      if (zs.avail_in == 0 && in_pos < bytes.size()) {
        const std::size_t chunk = std::min<std::size_t>(bytes.size() - in_pos, std::size_t{1} << 30);
        zs.next_in = const_cast<Bytef*>(bytes.data() + in_pos);  // zlib's API is not const-correct
        zs.avail_in = static_cast<uInt>(chunk);
        in_pos += chunk;
      }
      std::uint8_t buf[1 << 16];
      zs.next_out = buf;
      zs.avail_out = sizeof buf;
      rc = inflate(&zs, Z_NO_FLUSH);
      const std::size_t produced = sizeof buf - zs.avail_out;
      if (out.size() + produced > max_output)
        throw data_error(source + ": gzip content exceeds the " + std::to_string(max_output) +
                         "-byte limit; the file is corrupt or not a data set file");
      out.insert(out.end(), buf, buf + produced);
      if (declared_size && !declared) {
        declared = declared_size(out);
        if (declared && *declared > max_output)
          throw data_error(source + ": the header declares " + std::to_string(*declared) + " bytes, over the " +
                           std::to_string(max_output) + "-byte limit; the file is corrupt or not a data set file");
      }
      // Checked per 64 KiB chunk, so a bomb costs no more than that.
      if (declared && out.size() > *declared)
        throw data_error(source + ": gzip content exceeds the " + std::to_string(*declared) +
                         " bytes its header declares; the file is corrupt (or a decompression bomb), re-fetch it");
      if (rc == Z_DATA_ERROR)
        throw data_error(source + ": corrupt gzip data (" + (zs.msg ? zs.msg : "zlib data error") + ") after " +
                         std::to_string(out.size()) +
                         " decompressed bytes; the download is damaged, fetch/reinstall the file");
      if (rc == Z_MEM_ERROR) throw data_error(source + ": out of memory while inflating gzip data");
      if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_pos >= bytes.size())
        throw data_error(source + ": gzip stream truncated: the file ends after " + std::to_string(out.size()) +
                         " decompressed bytes, before the end of the compressed data; re-fetch the file");
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
        throw data_error(source + ": zlib error " + std::to_string(rc) + " while inflating");
    } while (rc != Z_STREAM_END);
    ++members;
    const std::size_t consumed = in_pos - zs.avail_in;
    if (consumed == bytes.size()) break;
    // Concatenated members are legal gzip; anything else after the end is not.
    if (!is_gzip(bytes.subspan(consumed)))
      throw data_error(source + ": " + std::to_string(bytes.size() - consumed) +
                       " unexpected bytes after the end of gzip member " + std::to_string(members) +
                       "; the file is corrupt");
    if (inflateReset(&zs) != Z_OK) throw data_error(source + ": cannot reset zlib");
  }
  return out;
}

std::vector<std::uint8_t> read_maybe_gzip(const std::filesystem::path& path) {
  std::vector<std::uint8_t> raw = read_file_bytes(path);
  if (!is_gzip(raw)) return raw;
  try {
    return gunzip(raw, quoted(path));
  } catch (const std::bad_alloc&) {
    throw data_error(quoted(path) + ": not enough memory to inflate the gzip file");
  }
}

namespace {

struct idx_header {
  std::size_t header_bytes = 0;
  std::uint64_t count = 1;  // data bytes
  std::vector<std::uint32_t> dims;
  std::string shape;  // "5x4x3"
};

// The header at the start of `bytes`; nullopt when `bytes` ends first.
std::optional<idx_header> parse_idx_header(std::span<const std::uint8_t> bytes, const std::string& source) {
  if (bytes.size() < 4) return std::nullopt;
  const std::uint32_t magic = std::uint32_t{bytes[0]} << 24 | std::uint32_t{bytes[1]} << 16 |
                              std::uint32_t{bytes[2]} << 8 | std::uint32_t{bytes[3]};
  if (bytes[0] != 0 || bytes[1] != 0)
    throw data_error(source + ": bad IDX magic " + hex32(magic) +
                     ": expected 0x0000TTRR (e.g. 0x00000803 for images, 0x00000801 for labels); "
                     "is this an IDX file?");
  if (bytes[2] != 0x08)
    throw data_error(source + ": IDX element type 0x" + hex32(bytes[2]).substr(8) +
                     " not supported: expected 0x08 (unsigned byte)");
  const unsigned rank = bytes[3];
  if (rank < 1 || rank > 4)
    throw data_error(source + ": IDX rank " + std::to_string(rank) + " not supported: expected 1 to 4");
  idx_header h;
  h.header_bytes = 4 + 4 * std::size_t{rank};
  if (bytes.size() < h.header_bytes) return std::nullopt;
  for (unsigned i = 0; i < rank; ++i) {
    const std::uint8_t* p = bytes.data() + 4 + 4 * i;
    const std::uint32_t d = std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
    h.dims.push_back(d);
    if (i) h.shape += 'x';
    h.shape += std::to_string(d);
    // Each factor < 2^32 and we stop at 2^40, so the product cannot overflow.
    h.count *= d;
    if (h.count > (std::uint64_t{1} << 40))
      throw data_error(source + ": IDX dimensions " + h.shape + "... are implausibly large; the header is corrupt");
  }
  return h;
}

}  // namespace

std::optional<std::size_t> idx_declared_size(std::span<const std::uint8_t> prefix, const std::string& source) {
  const auto h = parse_idx_header(prefix, source);
  if (!h) return std::nullopt;
  return h->header_bytes + static_cast<std::size_t>(h->count);
}

idx_array parse_idx(std::span<const std::uint8_t> bytes, const std::string& source) {
  if (bytes.size() < 4)
    throw data_error(source + ": too short for an IDX header: expected at least 4 bytes, found " +
                     std::to_string(bytes.size()));
  const auto h = parse_idx_header(bytes, source);
  if (!h) {
    const unsigned rank = bytes[3];
    throw data_error(source + ": truncated IDX header: expected " + std::to_string(4 + 4 * std::size_t{rank}) +
                     " bytes for rank " + std::to_string(rank) + ", found " + std::to_string(bytes.size()));
  }
  const std::size_t header = h->header_bytes;
  const std::uint64_t count = h->count;
  const std::string& shape = h->shape;
  idx_array a;
  a.dims = h->dims;
  const std::size_t payload = bytes.size() - header;
  if (payload < count)
    throw data_error(source + ": truncated: dimensions " + shape + " need " + std::to_string(count) +
                     " data bytes, found " + std::to_string(payload) + "; re-fetch the file");
  if (payload > count)
    throw data_error(source + ": " + std::to_string(payload - count) + " unexpected trailing bytes: dimensions " +
                     shape + " need " + std::to_string(count) + " data bytes, found " + std::to_string(payload));
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

idx_array read_idx(const std::filesystem::path& path) {
  const std::string source = quoted(path);
  try {
    std::vector<std::uint8_t> bytes = read_file_bytes(path);
    if (is_gzip(bytes))
      bytes = gunzip(bytes, source, gunzip_max_output,
                     [&](std::span<const std::uint8_t> prefix) { return idx_declared_size(prefix, source); });
    return parse_idx(bytes, source);
  } catch (const std::bad_alloc&) {
    throw data_error(source + ": not enough memory to load the file");
  }
}

dataset load_idx_dataset(const std::filesystem::path& images, const std::filesystem::path& labels, std::string name,
                         const idx_expectations& expect) {
  idx_array im = read_idx(images);
  idx_array lb = read_idx(labels);
  if (im.dims.size() != 3)
    throw data_error(quoted(images) + ": expected a rank-3 IDX image file (count x rows x cols), found rank " +
                     std::to_string(im.dims.size()) + "; is this a labels file?");
  if (lb.dims.size() != 1)
    throw data_error(quoted(labels) + ": expected a rank-1 IDX labels file, found rank " +
                     std::to_string(lb.dims.size()) + "; is this an images file?");
  if (im.dims[1] == 0 || im.dims[2] == 0 || im.dims[1] > 4096 || im.dims[2] > 4096)
    throw data_error(quoted(images) + ": image size " + std::to_string(im.dims[1]) + "x" + std::to_string(im.dims[2]) +
                     " is not plausible (expected 1..4096 per side)");
  if ((expect.rows && im.dims[1] != *expect.rows) || (expect.cols && im.dims[2] != *expect.cols))
    throw data_error(quoted(images) + ": expected " + std::to_string(expect.rows.value_or(im.dims[1])) + "x" +
                     std::to_string(expect.cols.value_or(im.dims[2])) + " images, found " + std::to_string(im.dims[1]) +
                     "x" + std::to_string(im.dims[2]) + "; is this the right data set?");
  if (im.dims[0] != lb.dims[0])
    throw data_error("label/image count mismatch: " + quoted(images) + " holds " + std::to_string(im.dims[0]) +
                     " images but " + quoted(labels) + " holds " + std::to_string(lb.dims[0]) +
                     " labels; the files do not belong together");
  if (im.dims[0] == 0) throw data_error(quoted(images) + ": holds no images");
  for (std::size_t i = 0; i < lb.data.size(); ++i)
    if (lb.data[i] >= expect.num_classes)
      throw data_error(quoted(labels) + ": label " + std::to_string(lb.data[i]) + " at index " + std::to_string(i) +
                       " is out of range: expected 0.." + std::to_string(expect.num_classes - 1));
  dataset d;
  d.name = std::move(name);
  d.channels = 1;
  d.height = static_cast<int>(im.dims[1]);
  d.width = static_cast<int>(im.dims[2]);
  d.num_classes = expect.num_classes;
  d.images = std::move(im.data);
  d.labels = std::move(lb.data);
  return d;
}

namespace {

std::filesystem::path find_idx_file(const std::filesystem::path& dir, const std::string& prefix,
                                    const std::string& kind, std::string_view hint) {
  // "train-images-idx3-ubyte" (LeCun / Zalando naming) or "train-images.idx3-ubyte".
  const std::string names[] = {prefix + "-" + kind,
                               prefix + "-" + kind.substr(0, kind.find('-')) + "." + kind.substr(kind.find('-') + 1)};
  std::string tried;
  for (const auto& base : names)
    for (const char* ext : {"", ".gz"}) {
      const std::filesystem::path p = dir / (base + ext);
      std::error_code ec;
      if (std::filesystem::is_regular_file(p, ec)) return p;
      tried += (tried.empty() ? "" : ", ") + base + ext;
    }
  throw data_error("missing data file in '" + dir.string() + "': expected one of " + tried + "; " + std::string(hint));
}

}  // namespace

dataset_pair load_idx_directory(const std::filesystem::path& dir, const std::string& name, std::string_view hint,
                                const idx_expectations& expect) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw data_error("data directory '" + dir.string() + "' does not exist; " + std::string(hint));
  dataset_pair p;
  p.train = load_idx_dataset(find_idx_file(dir, "train", "images-idx3-ubyte", hint),
                             find_idx_file(dir, "train", "labels-idx1-ubyte", hint), name + "/train", expect);
  idx_expectations test_expect = expect;
  test_expect.rows = static_cast<std::uint32_t>(p.train.height);
  test_expect.cols = static_cast<std::uint32_t>(p.train.width);
  p.test = load_idx_dataset(find_idx_file(dir, "t10k", "images-idx3-ubyte", hint),
                            find_idx_file(dir, "t10k", "labels-idx1-ubyte", hint), name + "/test", test_expect);
  compute_channel_stats(p.train, p.train.mean, p.train.std);
  p.test.mean = p.train.mean;
  p.test.std = p.train.std;
  return p;
}

}  // namespace trainer
