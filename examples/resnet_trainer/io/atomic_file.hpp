// Crash-safe file replacement: the content is written to a temporary file in
// the target's directory, flushed to disk (fsync), renamed over the target
// and the directory entry is flushed too. Readers see either the old file or
// the complete new one, never a half-written file, even after a power loss
// or a SIGKILL in the middle of the write.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace trainer {

// File system failures (open, write, fsync, rename) and malformed files;
// the message names the file and the operation.
class io_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Buffered writer on an open file descriptor, handed to the producer of
// write_file_atomic. Write errors throw io_error.
class file_sink {
 public:
  file_sink(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) { buf_.reserve(capacity); }
  file_sink(const file_sink&) = delete;
  file_sink& operator=(const file_sink&) = delete;

  void write(const void* data, std::size_t n);
  void write(std::span<const std::uint8_t> bytes) { write(bytes.data(), bytes.size()); }
  void flush();
  [[nodiscard]] std::uint64_t bytes_written() const noexcept { return written_ + buf_.size(); }

 private:
  static constexpr std::size_t capacity = std::size_t{1} << 20;
  void write_fd(const std::uint8_t* p, std::size_t n);
  int fd_;
  std::filesystem::path path_;
  std::vector<std::uint8_t> buf_;
  std::uint64_t written_ = 0;
};

// Replaces `target` with what `produce` writes. If `produce` throws (or any
// step fails) the temporary is removed, `target` is left as it was, and the
// exception propagates (file-system failures as io_error). New files get
// mode 0666 & ~umask, like any other file the process creates. A symbolic
// link is followed: the file it leads to is replaced and the link stays. A
// target that exists but is not a regular file (device, FIFO, socket,
// directory) is refused with io_error before `produce` runs.
void write_file_atomic(const std::filesystem::path& target, const std::function<void(file_sink&)>& produce);
void write_file_atomic(const std::filesystem::path& target, std::span<const std::uint8_t> bytes);

// Removes temporaries "<target name>.tmp-*" left in the target's directory
// by a process killed mid-write; returns how many were removed. Call only
// when no other process writes `target`.
std::size_t remove_stale_temporaries(const std::filesystem::path& target);

// "'path'" for messages (built by append: GCC 12's -Wrestrict misfires on
// "literal" + std::string temporaries at -O3).
[[nodiscard]] std::string quoted(const std::filesystem::path& p);

// Whole file as bytes (io_error naming the file when it cannot be read, or
// when it is not a regular file: a device or pipe has no size to bound it).
[[nodiscard]] std::vector<std::uint8_t> read_whole_file(const std::filesystem::path& path);

}  // namespace trainer
