#include "io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>

namespace trainer {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

[[noreturn]] void fail(const std::string& what, const std::filesystem::path& p, int err) {
  throw io_error(what + " '" + p.string() + "': " + errno_text(err));
}

struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
};

void fsync_directory(const std::filesystem::path& dir) {
  fd_guard d{::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (d.fd < 0) fail("cannot open directory", dir, errno);
  // Some file systems do not support fsync on directories (EINVAL); the
  // rename itself has still happened then, so that is not an error.
  if (::fsync(d.fd) != 0 && errno != EINVAL && errno != EROFS) fail("cannot fsync directory", dir, errno);
}

std::string temporary_prefix(const std::filesystem::path& target) { return target.filename().string() + ".tmp-"; }

const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  return "a special file";
}

// The file a write to `target` replaces: `target`, or where its chain of
// symbolic links ends. Renaming over the link itself would turn it into a
// plain file; following it keeps the link, as a shell's `>` does.
std::filesystem::path resolve_symlinks(const std::filesystem::path& target) {
  std::filesystem::path p = target;
  for (int hops = 0;; ++hops) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return p;
    if (hops == 40) throw io_error("cannot write " + quoted(target) + ": too many levels of symbolic links");
    std::error_code ec;
    const std::filesystem::path next = std::filesystem::read_symlink(p, ec);
    if (ec) throw io_error("cannot write " + quoted(target) + ": cannot read symbolic link " + quoted(p) + ": " +
                           ec.message());
    p = p.parent_path() / next;  // a relative link is relative to its own directory; an absolute one replaces p
  }
}

// rename(2) would replace a device, FIFO or socket by a plain file (e.g.
// /dev/null, as root) and fails obscurely on a directory, so those are
// refused. Other stat failures (absent file, no access) are left to the
// steps that follow, which report them.
void require_regular_or_absent(const std::filesystem::path& real, const std::filesystem::path& target) {
  struct stat st {};
  if (::stat(real.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return;
  std::string what = "cannot write " + quoted(target);
  if (real != target) what += " (a symbolic link to " + quoted(real) + ")";
  throw io_error(what + ": it is " + file_kind(st.st_mode) + ", not a regular file; choose a file path");
}

}  // namespace

void file_sink::write_fd(const std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("cannot write", path_, errno);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
    written_ += static_cast<std::uint64_t>(w);
  }
}

void file_sink::write(const void* data, std::size_t n) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  if (buf_.size() + n > capacity) {
    flush();
    if (n >= capacity) {
      write_fd(p, n);
      return;
    }
  }
  buf_.insert(buf_.end(), p, p + n);
}

void file_sink::flush() {
  if (buf_.empty()) return;
  write_fd(buf_.data(), buf_.size());
  buf_.clear();
}

void write_file_atomic(const std::filesystem::path& target, const std::function<void(file_sink&)>& produce) {
  if (target.filename().empty()) throw io_error("cannot write '" + target.string() + "': not a file name");
  const std::filesystem::path real = resolve_symlinks(target);
  if (real.filename().empty())
    throw io_error("cannot write " + quoted(target) + ": it links to " + quoted(real) + ", which is not a file name");
  require_regular_or_absent(real, target);  // before any work: nothing to clean up
  const std::filesystem::path dir = real.parent_path();
  std::error_code ec;
  if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
    throw io_error("cannot write '" + target.string() + "': directory '" + dir.string() + "' does not exist");

  // A unique name in the same directory (rename is only atomic within one
  // file system); O_EXCL makes collisions with other writers impossible.
  static std::atomic<std::uint64_t> counter{0};
  std::filesystem::path tmp;
  fd_guard fd;
  for (int attempt = 0; fd.fd < 0; ++attempt) {
    const auto stamp = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    tmp = real;
    tmp.replace_filename(temporary_prefix(real) + std::to_string(::getpid()) + "-" +
                         std::to_string(counter.fetch_add(1)) + "-" + std::to_string(stamp % 1000000));
    fd.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd.fd < 0 && (errno != EEXIST || attempt > 100)) fail("cannot create temporary file", tmp, errno);
  }
  try {
    file_sink sink(fd.fd, tmp);
    produce(sink);
    sink.flush();
    if (::fsync(fd.fd) != 0) fail("cannot fsync", tmp, errno);
    const int fd_value = fd.fd;
    fd.fd = -1;
    if (::close(fd_value) != 0) fail("cannot close", tmp, errno);
    // Again: producing the content can take long enough for the path to change.
    require_regular_or_absent(real, target);
    if (::rename(tmp.c_str(), real.c_str()) != 0) fail("cannot rename temporary file over", real, errno);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_directory(dir);
}

void write_file_atomic(const std::filesystem::path& target, std::span<const std::uint8_t> bytes) {
  write_file_atomic(target, [bytes](file_sink& s) { s.write(bytes); });
}

std::size_t remove_stale_temporaries(const std::filesystem::path& target) {
  // The temporaries sit beside the file a symbolic link leads to (see
  // write_file_atomic); this clean-up is best effort, so a broken chain
  // falls back to `target`.
  std::filesystem::path real = target;
  try {
    real = resolve_symlinks(target);
  } catch (const io_error&) {
  }
  const std::filesystem::path dir = real.parent_path().empty() ? "." : real.parent_path();
  const std::string prefix = temporary_prefix(real);
  std::size_t removed = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) == 0 && it->is_regular_file(ec)) {
      std::error_code rm;
      if (std::filesystem::remove(it->path(), rm)) ++removed;
    }
  }
  return removed;
}

std::string quoted(const std::filesystem::path& p) {
  std::string s = "'";
  s += p.string();
  s += '\'';
  return s;
}

std::vector<std::uint8_t> read_whole_file(const std::filesystem::path& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer before it can be
  // refused below. It has no effect on reads from regular files.
  fd_guard fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
  if (fd.fd < 0) fail("cannot open", path, errno);
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) fail("cannot stat", path, errno);
  if (S_ISDIR(st.st_mode)) throw io_error("cannot read '" + path.string() + "': it is a directory");
  // A device or pipe has no size to bound the read: /dev/zero would be read
  // until memory runs out.
  if (!S_ISREG(st.st_mode))
    throw io_error("cannot read " + quoted(path) + ": it is " + file_kind(st.st_mode) +
                   ", not a regular file; pass the path of a file");
  std::vector<std::uint8_t> out;
  try {
    if (st.st_size > 0) out.reserve(static_cast<std::size_t>(st.st_size));
    std::uint8_t buf[1 << 16];
    for (;;) {
      const ssize_t r = ::read(fd.fd, buf, sizeof buf);
      if (r < 0) {
        if (errno == EINTR) continue;
        fail("cannot read", path, errno);
      }
      if (r == 0) break;
      out.insert(out.end(), buf, buf + r);
    }
  } catch (const std::bad_alloc&) {
    throw io_error("cannot read " + quoted(path) + ": not enough memory for its " + std::to_string(st.st_size) +
                   " bytes");
  }
  return out;
}

}  // namespace trainer
