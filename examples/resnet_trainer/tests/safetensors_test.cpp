// safetensors reader/writer and atomic file replacement: round trips, the
// reference implementation's byte layout, strict rejection of corrupt
// headers and files, crash-safe writes that follow symbolic links and refuse
// special files, and metadata that is not valid UTF-8.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "io/safetensors.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstring>
#include <limits>
#include <stdexcept>

#include "io/atomic_file.hpp"
#include "tests/io_test_util.hpp"

using namespace trainer;
using trainer::testing::read_bytes;
using trainer::testing::scratch_dir;
using trainer::testing::write_bytes;

namespace {

std::vector<std::uint8_t> file_with_header(const std::string& header, std::size_t data_bytes) {
  // Sized once: GCC 12 -Warray-bounds misfires on insert after vector(8).
  std::vector<std::uint8_t> f(8 + header.size() + data_bytes, 0);
  const std::uint64_t n = header.size();
  std::memcpy(f.data(), &n, 8);
  if (!header.empty()) std::memcpy(f.data() + 8, header.data(), header.size());
  return f;
}

std::string require_st_error(const std::vector<std::uint8_t>& file, std::initializer_list<std::string> parts) {
  std::string msg;
  try {
    (void)parse_safetensors(file, "'bad.safetensors'");
  } catch (const safetensors_error& e) {
    msg = e.what();
  }
  INFO("message: " << msg);
  REQUIRE_FALSE(msg.empty());
  CHECK(msg.find("'bad.safetensors'") != std::string::npos);
  for (const auto& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "missing '" << p << "'");
  return msg;
}

std::string require_header_error(const std::string& header, std::size_t data_bytes,
                                 std::initializer_list<std::string> parts) {
  return require_st_error(file_with_header(header, data_bytes), parts);
}

tensor_archive sample_archive() {
  tensor_archive a;
  a.add<float>("layer1.0.conv1.weight", {2, 1, 3, 3},
               std::vector<float>{1.5F, -2.0F, 3.25F, 0.0F, -0.0F, 1e-30F, 7.0F, 8.0F, 9.0F, 1.0F, 2.0F, 3.0F, 4.0F,
                                  5.0F, 6.0F, 7.0F, 8.0F, std::numeric_limits<float>::infinity()});
  a.add<double>("optim.lr_trace", {3}, std::vector<double>{0.1, 0.01, 1e-300});
  a.add<std::int64_t>("bn1.num_batches_tracked", {}, std::vector<std::int64_t>{-(std::int64_t{1} << 40)});
  a.add<std::int32_t>("keep", {4}, std::vector<std::int32_t>{0, -1, 2147483647, -2147483647 - 1});
  a.add<std::uint8_t>("pruner.state", {5}, std::vector<std::uint8_t>{0, 1, 2, 254, 255});
  a.add<float>("empty", {0, 3}, std::vector<float>{});
  a.add<std::uint16_t>("u16", {1}, std::vector<std::uint16_t>{65535});
  a.metadata["epoch"] = "3";
  a.metadata["config"] = R"({"arch":"resnet","depth":20})";
  a.metadata["unicode \"quoted\""] = "ü\n\t";
  return a;
}

}  // namespace

TEST_CASE("safetensors: round trip of every dtype, scalars, empty tensors and metadata") {
  const tensor_archive a = sample_archive();
  const std::vector<std::uint8_t> bytes = serialize_safetensors(a);
  const tensor_archive b = parse_safetensors(bytes, "mem");
  CHECK(b.metadata == a.metadata);
  REQUIRE(b.tensors().size() == a.tensors().size());
  for (const auto& [name, t] : a.tensors()) {
    const st_tensor& u = b.at(name);
    CHECK(u.dtype == t.dtype);
    CHECK(u.shape == t.shape);
    CHECK(u.bytes == t.bytes);
  }
  CHECK(b.values<std::int64_t>("bn1.num_batches_tracked", std::vector<std::uint64_t>{}) ==
        std::vector<std::int64_t>{-(std::int64_t{1} << 40)});
  CHECK(b.values<float>("layer1.0.conv1.weight")[2] == 3.25F);
  CHECK(b.values<double>("optim.lr_trace")[2] == 1e-300);

  // Layout: header padded to 8 bytes, every tensor aligned to its element
  // size, tensors in decreasing alignment then name order.
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  CHECK(bytes[8] == '{');
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  const auto pos = [&](const std::string& k) { return header.find("\"" + k + "\""); };
  CHECK(pos("bn1.num_batches_tracked") < pos("optim.lr_trace"));  // I64 before F64 (reference order)
  CHECK(pos("optim.lr_trace") < pos("empty"));                    // F64 before F32
  CHECK(pos("empty") < pos("layer1.0.conv1.weight"));             // F32 by name
  CHECK(pos("keep") < pos("u16"));
  CHECK(pos("u16") < pos("pruner.state"));

  // File round trip through the atomic writer.
  scratch_dir dir;
  save_safetensors(dir / "a.safetensors", a);
  CHECK(read_bytes(dir / "a.safetensors") == bytes);
  CHECK(load_safetensors(dir / "a.safetensors").metadata == a.metadata);
}

TEST_CASE("safetensors: byte-identical to the reference implementation's test vectors") {
  // safetensors/src/tensor.rs, test_serialization: "attn.0" F32 [1,2,3] = 0..5.
  tensor_archive a;
  a.add<float>("attn.0", {1, 2, 3}, std::vector<float>{0, 1, 2, 3, 4, 5});
  const std::vector<std::uint8_t> want = {
      64,  0,  0,   0,  0,   0,  0,   0,   123, 34,  97,  116, 116, 110, 46,  48, 34, 58, 123, 34, 100, 116, 121, 112,
      101, 34, 58,  34, 70,  51, 50,  34,  44,  34,  115, 104, 97,  112, 101, 34, 58, 91, 49,  44, 50,  44,  51,  93,
      44,  34, 100, 97, 116, 97, 95,  111, 102, 102, 115, 101, 116, 115, 34,  58, 91, 48, 44,  50, 52,  93,  125, 125,
      0,   0,  0,   0,  0,   0,  128, 63,  0,   0,   0,   64,  0,   0,   64,  64, 0,  0,  128, 64, 0,   0,   160, 64};
  CHECK(serialize_safetensors(a) == want);

  // test_empty: no tensors, then only metadata {"framework": "pt"}.
  tensor_archive e;
  CHECK(serialize_safetensors(e) ==
        std::vector<std::uint8_t>{8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32});
  e.metadata["framework"] = "pt";
  std::vector<std::uint8_t> want_meta = {40, 0, 0, 0, 0, 0, 0, 0};
  const std::string meta_json = R"({"__metadata__":{"framework":"pt"}})";
  want_meta.insert(want_meta.end(), meta_json.begin(), meta_json.end());
  want_meta.insert(want_meta.end(), 5, ' ');
  CHECK(serialize_safetensors(e) == want_meta);

  // test_serialization_forced_alignement: "attn0" F32 [1,1,2,3] needs 7 spaces.
  tensor_archive f;
  f.add<float>("attn0", {1, 1, 2, 3}, std::vector<float>{0, 1, 2, 3, 4, 5});
  const auto fb = serialize_safetensors(f);
  CHECK(fb[0] == 72);
  CHECK(std::string(fb.begin() + 8 + 65, fb.begin() + 80) == "       ");

  // The documented example file (an I32 [2,2] tensor, header not padded).
  const std::string doc = R"({"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}})";
  const auto parsed = parse_safetensors(file_with_header(doc, 16), "doc");
  CHECK(parsed.values<std::int32_t>("test", std::vector<std::uint64_t>{2, 2}) == std::vector<std::int32_t>(4, 0));
}

TEST_CASE("safetensors: corrupt and truncated files are rejected with the problem named") {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK_NOTHROW((void)parse_safetensors(file_with_header(ok, 8), "ok"));

  SUBCASE("too short for the length") { require_st_error({1, 2, 3}, {"too short", "3 bytes"}); }
  SUBCASE("header length over the limit") {
    auto f = file_with_header(ok, 8);
    const std::uint64_t n = 100'000'001;
    std::memcpy(f.data(), &n, 8);
    require_st_error(f, {"header length 100000001 exceeds", "100000000"});
  }
  SUBCASE("header length past the end of the file") {
    auto f = file_with_header(ok, 8);
    const std::uint64_t n = 1000;
    std::memcpy(f.data(), &n, 8);
    require_st_error(f, {"header length 1000 runs past the end", "truncated"});
  }
  SUBCASE("truncated file (data cut short)") {
    auto f = serialize_safetensors(sample_archive());
    f.pop_back();
    require_st_error(f, {"end at", "truncated"});
  }
  SUBCASE("truncated inside the header") {
    auto f = serialize_safetensors(sample_archive());
    f.resize(40);
    require_st_error(f, {"runs past the end"});
  }
  SUBCASE("header not starting with '{'") { require_header_error(" " + ok, 8, {"does not start with '{'"}); }
  SUBCASE("invalid JSON") { require_header_error(R"({"a":{"dtype":"F32",)", 0, {"not valid UTF-8 JSON"}); }
  SUBCASE("invalid UTF-8") {
    require_header_error("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                         {"not valid UTF-8 JSON"});
  }
  SUBCASE("trailing NUL padding is not JSON") { require_header_error(ok + std::string(3, '\0'), 8, {"JSON"}); }
  SUBCASE("duplicate tensor name") {
    require_header_error(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                         8, {"duplicate key 'a'"});
  }
  SUBCASE("duplicate metadata key") {
    require_header_error(R"({"__metadata__":{"k":"1","k":"2"}})", 0, {"duplicate key 'k'"});
  }
  SUBCASE("duplicate field inside an entry") {
    require_header_error(R"({"a":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}})", 8,
                         {"duplicate key 'dtype'"});
  }
  SUBCASE("unknown dtype") {
    require_header_error(R"({"a":{"dtype":"float32","shape":[2],"data_offsets":[0,8]}})", 8,
                         {"tensor 'a'", "unknown dtype 'float32'"});
  }
  SUBCASE("negative or fractional shape") {
    require_header_error(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, {"non-negative integers"});
    require_header_error(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8, {"non-negative integers"});
  }
  SUBCASE("malformed offsets") {
    require_header_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8, {"[begin, end]"});
    require_header_error(R"({"a":{"dtype":"F32","shape":[2]}})", 8, {"[begin, end]"});
    require_header_error(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8, {"end before they begin"});
  }
  SUBCASE("dtype x shape does not match the offsets") {
    require_header_error(R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}})", 8,
                         {"tensor 'a'", "F64 [2] needs 16 bytes but data_offsets span 8"});
  }
  SUBCASE("shape overflow") {
    require_header_error(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8,
                         {"overflows"});
  }
  SUBCASE("gap, overlap, trailing bytes") {
    require_header_error(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8,
                         {"begin at 4, expected 0", "gap"});
    require_header_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                         8, {"overlaps"});
    require_header_error(ok, 12, {"12 bytes but the tensors cover 8", "trailing"});
  }
  SUBCASE("metadata must be strings") {
    require_header_error(R"({"__metadata__":{"epoch":3}})", 0, {"__metadata__ value for 'epoch' is not a string"});
    require_header_error(R"({"__metadata__":["x"]})", 0, {"__metadata__ must be an object"});
  }
  SUBCASE("entry shape and extra fields") {
    require_header_error(R"({"a":[1,2]})", 0, {"tensor 'a': entry is not an object"});
    require_header_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8,
                         {"unexpected field 'x'"});
  }
}

TEST_CASE("tensor_archive: typed access checks dtype, shape and size") {
  const tensor_archive a = sample_archive();
  CHECK_THROWS_WITH_AS((void)a.values<double>("keep"), "tensor 'keep' has dtype I32, expected F64", safetensors_error);
  CHECK_THROWS_WITH_AS((void)a.values<std::int32_t>("keep", std::vector<std::uint64_t>{2, 2}),
                       "tensor 'keep' has shape [4], expected [2, 2]", safetensors_error);
  CHECK_THROWS_WITH_AS((void)a.at("nope"), "tensor 'nope' not found", safetensors_error);
  std::vector<std::int32_t> dst(3);
  CHECK_THROWS_WITH_AS(a.copy_to<std::int32_t>("keep", dst), "tensor 'keep' has 4 elements, the destination expects 3",
                       safetensors_error);
  dst.resize(4);
  a.copy_to<std::int32_t>("keep", dst);
  CHECK(dst[2] == 2147483647);
  tensor_archive b;
  b.add<float>("x", {2}, std::vector<float>{1, 2});
  CHECK_THROWS_WITH_AS(b.add<float>("x", {2}, std::vector<float>{1, 2}), "duplicate tensor name 'x'",
                       safetensors_error);
  CHECK_THROWS_AS(b.add<float>("y", {3}, std::vector<float>{1, 2}), safetensors_error);
  CHECK_THROWS_AS(b.add<float>("__metadata__", {1}, std::vector<float>{1}), safetensors_error);
}

TEST_CASE("atomic write: a failing writer leaves the old file intact and no temporary behind") {
  scratch_dir dir;
  const auto target = dir / "last.safetensors";
  const std::vector<std::uint8_t> old = {1, 2, 3, 4};
  write_file_atomic(target, old);
  CHECK(read_bytes(target) == old);

  CHECK_THROWS_WITH_AS(write_file_atomic(target,
                                         [](file_sink& s) {
                                           const std::vector<std::uint8_t> big(3 << 20, 0xAB);
                                           s.write(big);  // more than the buffer: really hits the disk
                                           throw std::runtime_error("writer failed midway");
                                         }),
                       "writer failed midway", std::runtime_error);
  CHECK(read_bytes(target) == old);
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
  CHECK(entries == 1);

  // A safetensors save that fails half way (archive too large a header is
  // refused before writing; here: a missing directory) leaves nothing.
  CHECK_THROWS_AS(save_safetensors(dir / "missing" / "x.safetensors", sample_archive()), io_error);

  // Success replaces the content; stale temporaries of killed writers go.
  save_safetensors(target, sample_archive());
  CHECK(load_safetensors(target).metadata.at("epoch") == "3");
  write_bytes(dir / "last.safetensors.tmp-123-0-45", {9});
  write_bytes(dir / "other.tmp-1", {9});
  CHECK(remove_stale_temporaries(target) == 1);
  CHECK(std::filesystem::exists(dir / "other.tmp-1"));
  CHECK(std::filesystem::exists(target));
}

TEST_CASE("atomic write and load: file-system errors name the file") {
  scratch_dir dir;
  CHECK_THROWS_WITH_AS(write_file_atomic(dir / "no" / "f", std::vector<std::uint8_t>{1}),
                       doctest::Contains("directory"), io_error);
  CHECK_THROWS_WITH_AS((void)load_safetensors(dir / "absent.safetensors"), doctest::Contains("absent.safetensors"),
                       io_error);
  CHECK_THROWS_WITH_AS((void)load_safetensors(dir.path()), doctest::Contains("directory"), io_error);
  write_bytes(dir / "junk.safetensors", {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
  CHECK_THROWS_WITH_AS((void)load_safetensors(dir / "junk.safetensors"), doctest::Contains("junk.safetensors"),
                       safetensors_error);
}

TEST_CASE("safetensors: metadata that is not valid UTF-8 is saved with U+FFFD; tensor names must be UTF-8") {
  scratch_dir dir;
  const auto path = dir / "m.safetensors";
  tensor_archive a;
  a.add<float>("w", {2}, std::vector<float>{1.0F, 2.0F});
  a.metadata["data_dir"] = "/data/caf\xE9";  // Latin-1 e-acute, as a path from a non-UTF-8 locale
  a.metadata["bad key \xFF"] = "v";
  a.metadata["fine"] = "\xC3\xBC";  // valid UTF-8 is kept as is
  save_safetensors(path, a);
  const tensor_archive b = load_safetensors(path);  // the strict reader accepts the header
  CHECK(b.metadata.at("data_dir") == "/data/caf\xEF\xBF\xBD");
  CHECK(b.metadata.at("bad key \xEF\xBF\xBD") == "v");
  CHECK(b.metadata.at("fine") == "\xC3\xBC");
  CHECK(b.values<float>("w") == std::vector<float>{1.0F, 2.0F});

  // Keys that differ only in invalid bytes would be duplicates in the file.
  tensor_archive c;
  c.metadata["k\xFE"] = "1";
  c.metadata["k\xFF"] = "2";
  CHECK_THROWS_WITH_AS(save_safetensors(path, c), doctest::Contains("metadata keys collide"), safetensors_error);
  CHECK(load_safetensors(path).metadata.at("data_dir") == "/data/caf\xEF\xBF\xBD");  // old file intact

  // A replaced tensor name would not be found on load: refused when added.
  CHECK_THROWS_WITH_AS(c.add<float>("conv\xFF", {1}, std::vector<float>{1.0F}), doctest::Contains("not valid UTF-8"),
                       safetensors_error);
}

TEST_CASE("atomic write: a symbolic link is followed, the file it leads to is replaced, the link stays") {
  scratch_dir dir;
  write_file_atomic(dir / "real.bin", std::vector<std::uint8_t>{1, 2});
  std::filesystem::create_symlink("real.bin", dir / "link.bin");            // relative to the link's directory
  std::filesystem::create_symlink(dir / "link.bin", dir / "chain.bin");     // absolute, to another link
  std::filesystem::create_symlink("sub/new.bin", dir / "dangling.bin");     // target not there yet
  std::filesystem::create_directories(dir / "sub");

  write_file_atomic(dir / "link.bin", std::vector<std::uint8_t>{7, 8, 9});
  CHECK(std::filesystem::is_symlink(dir / "link.bin"));
  CHECK(std::filesystem::read_symlink(dir / "link.bin") == "real.bin");
  CHECK(read_bytes(dir / "real.bin") == std::vector<std::uint8_t>{7, 8, 9});

  write_file_atomic(dir / "chain.bin", std::vector<std::uint8_t>{4});
  CHECK(std::filesystem::is_symlink(dir / "chain.bin"));
  CHECK(std::filesystem::is_symlink(dir / "link.bin"));
  CHECK(read_bytes(dir / "real.bin") == std::vector<std::uint8_t>{4});

  write_file_atomic(dir / "dangling.bin", std::vector<std::uint8_t>{5});
  CHECK(std::filesystem::is_symlink(dir / "dangling.bin"));
  CHECK(std::filesystem::is_regular_file(std::filesystem::symlink_status(dir / "sub" / "new.bin")));
  CHECK(read_bytes(dir / "sub" / "new.bin") == std::vector<std::uint8_t>{5});

  // The temporaries were made (and renamed away) beside the real files.
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::recursive_directory_iterator(dir.path())) ++entries;
  CHECK(entries == 6);  // real.bin, link.bin, chain.bin, dangling.bin, sub, sub/new.bin

  std::filesystem::create_symlink("loop.bin", dir / "loop.bin");
  CHECK_THROWS_WITH_AS(write_file_atomic(dir / "loop.bin", std::vector<std::uint8_t>{1}),
                       doctest::Contains("too many levels of symbolic links"), io_error);
  CHECK(std::filesystem::is_symlink(dir / "loop.bin"));
}

TEST_CASE("atomic write and load: a FIFO or directory is refused, left as it was, nothing produced") {
  scratch_dir dir;
  const auto fifo = dir / "pipe";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::filesystem::create_symlink("pipe", dir / "to-pipe");
  std::filesystem::create_directories(dir / "subdir");

  bool produced = false;
  const auto producer = [&](file_sink& s) {
    produced = true;
    s.write(std::vector<std::uint8_t>{1});
  };
  const std::string fifo_msg = fifo.string() + "': it is a FIFO (named pipe), not a regular file; choose a file path";
  CHECK_THROWS_WITH_AS(write_file_atomic(fifo, producer), doctest::Contains(fifo_msg.c_str()), io_error);
  const std::string link_msg = "to-pipe' (a symbolic link to '" + fifo.string() + "'): it is a FIFO";
  CHECK_THROWS_WITH_AS(write_file_atomic(dir / "to-pipe", producer), doctest::Contains(link_msg.c_str()), io_error);
  CHECK_THROWS_WITH_AS(write_file_atomic(dir / "subdir", producer),
                       doctest::Contains("it is a directory, not a regular file"), io_error);
  CHECK_FALSE(produced);
  CHECK(std::filesystem::is_fifo(fifo));
  CHECK(std::filesystem::is_symlink(dir / "to-pipe"));
  CHECK(std::filesystem::is_directory(dir / "subdir"));
  std::size_t entries = 0;  // no temporary left behind
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
  CHECK(entries == 3);

  // Reading: a FIFO (or /dev/zero) has no size to bound the read; refused at
  // once, without waiting for a writer.
  CHECK_THROWS_WITH_AS((void)load_safetensors(fifo), doctest::Contains("it is a FIFO (named pipe), not a regular file"),
                       io_error);
  CHECK(std::filesystem::is_fifo(fifo));
}
