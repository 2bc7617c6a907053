#include "pipeline/base/fs_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "pipeline/base/errors.h"

namespace augment {

fs::path temp_path_for(const fs::path& target) {
  static std::atomic<std::uint64_t> counter{0};
  static const std::uint64_t salt = std::random_device{}();
  const auto n = counter.fetch_add(1);
  auto name = fmt::format(".{}{}{}.{:x}", target.filename().string(), kTempMarker, ::getpid(),
                          salt ^ (n * 0x9E3779B97F4A7C15ull));
  return target.parent_path() / name;
}

fs::path folder_beside(const fs::path& folder, std::string_view suffix) {
  return folder.parent_path() / (folder.filename().string() + std::string(suffix));
}

void fsync_file(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw UserError(ExitCode::kIoError,
                    fmt::format("cannot open {} to sync it: {}", path.string(), std::strerror(errno)));
  }
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    throw UserError(ExitCode::kIoError, fmt::format("cannot sync {}: {}", path.string(), std::strerror(err)));
  }
}

void fsync_directory(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // some file systems do not allow it; the rename is still atomic
  ::fsync(fd);
  ::close(fd);
}

void write_atomically(const fs::path& target, const std::function<void(const fs::path& tmp)>& write) {
  ensure_directory(target.parent_path().empty() ? fs::path(".") : target.parent_path());
  const fs::path tmp = temp_path_for(target);
  try {
    write(tmp);
    commit_temp_file(tmp, target);
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

void commit_temp_file(const fs::path& tmp, const fs::path& target) {
  fsync_file(tmp);
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec)
    throw UserError(ExitCode::kIoError,
                    fmt::format("cannot move {} into place as {}: {}", tmp.string(), target.string(), ec.message()));
  fsync_directory(target.parent_path().empty() ? fs::path(".") : target.parent_path());
}

void write_file_unsynced(const fs::path& target, const std::vector<std::uint8_t>& bytes) {
  const auto tmp = temp_path_for(target);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw UserError(ExitCode::kCantCreate, fmt::format("cannot create {}: {}", tmp.string(), std::strerror(errno)));
  const int err = write_to_fd(fd, bytes.data(), bytes.size());
  ::close(fd);
  std::error_code ec;
  if (err != 0) {
    fs::remove(tmp, ec);
    throw UserError(ExitCode::kIoError,
                    fmt::format("cannot write {}: {}{}", target.string(), std::strerror(err), disk_full_hint(err)));
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw UserError(ExitCode::kIoError, fmt::format("cannot move {} into place: {}", target.string(), ec.message()));
  }
}

bool directory_is_empty(const fs::path& dir) {
  std::error_code ec;
  return fs::directory_iterator(dir, ec) == fs::directory_iterator();
}

void replace_directory(const fs::path& tmp, const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec) || directory_is_empty(dir)) {
    fs::rename(tmp, dir, ec);
    if (ec)
      throw UserError(ExitCode::kIoError,
                      fmt::format("cannot move {} into place as {}: {}", tmp.string(), dir.string(), ec.message()));
  } else if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(tmp, ec);  // now the old tree
  } else {
    const auto old = temp_path_for(dir);
    fs::rename(dir, old, ec);
    if (ec)
      throw UserError(ExitCode::kIoError, fmt::format("cannot move the old {} aside: {}", dir.string(), ec.message()));
    fs::rename(tmp, dir, ec);
    if (ec) {
      std::error_code back;
      fs::rename(old, dir, back);
      throw UserError(ExitCode::kIoError,
                      fmt::format("cannot move {} into place as {}: {}", tmp.string(), dir.string(), ec.message()));
    }
    fs::remove_all(old, ec);
  }
  fsync_directory(dir.parent_path());
}

void write_text_atomically(const fs::path& target, std::string_view text) {
  write_atomically(target, [&](const fs::path& tmp) {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
      throw UserError(ExitCode::kIoError,
                      fmt::format("cannot write {}: {} (no permission?)", tmp.string(), std::strerror(errno)));
    // In slices of 8 MiB, each handed to the disk as soon as it is copied, so the fsync at the end
    // waits for less.
    constexpr std::size_t kFlush = 8 << 20;
    for (std::size_t at = 0; at < text.size(); at += kFlush) {
      const std::size_t n = std::min(kFlush, text.size() - at);
      if (const int err = write_to_fd(fd, text.data() + at, n); err != 0) {
        ::close(fd);
        throw UserError(ExitCode::kIoError,
                        fmt::format("cannot write {}: {}{}", tmp.string(), std::strerror(err), disk_full_hint(err)));
      }
#ifdef SYNC_FILE_RANGE_WRITE
      if (n == kFlush) ::sync_file_range(fd, static_cast<off_t>(at), static_cast<off_t>(n), SYNC_FILE_RANGE_WRITE);
#endif
    }
    if (::close(fd) != 0) {
      const int err = errno;
      throw UserError(ExitCode::kIoError,
                      fmt::format("cannot write {}: {}{}", tmp.string(), std::strerror(err), disk_full_hint(err)));
    }
  });
}

int write_to_fd(int fd, const void* data, std::size_t size) {
  constexpr std::size_t kPiece = 1 << 20;
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const auto n = ::write(fd, p, std::min(kPiece, size));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return ENOSPC;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return 0;
}

std::string disk_full_hint(int err) {
  return err == ENOSPC || err == EDQUOT || err == EFBIG ? " (disk full?): free space and rerun; finished work is kept"
                                                        : "";
}

int copy_file_new(const fs::path& src, const fs::path& dst) {
  const int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return errno;
  const int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    const int err = errno;
    ::close(in);
    return err;
  }
  int err = 0;
  std::vector<char> buf(1 << 20);
  for (;;) {
    const auto n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;
    if ((err = write_to_fd(out, buf.data(), static_cast<std::size_t>(n))) != 0) break;
  }
  ::close(in);
  if (::close(out) != 0 && err == 0) err = errno;
  if (err != 0) {
    std::error_code ec;
    fs::remove(dst, ec);
  }
  return err;
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(ExitCode::kNoInput, fmt::format("cannot read {}", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool read_file_bytes(const fs::path& path, std::vector<std::uint8_t>& buf) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return false;
  }
  buf.resize(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < buf.size()) {
    const auto n = ::read(fd, buf.data() + got, buf.size() - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return got == buf.size();
}

int remove_stale_temp_files(const fs::path& dir) {
  int removed = 0;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (name.find(kTempMarker) != std::string::npos) {
      std::error_code rm;
      if (it->is_directory(rm)) {
        fs::remove_all(it->path(), rm);
        it.disable_recursion_pending();
      } else {
        fs::remove(it->path(), rm);
      }
      if (!rm) ++removed;
    }
  }
  return removed;
}

static fs::path resolve_existing_prefix(const fs::path& p) {
  // weakly_canonical resolves symlinks of the existing part and normalises the rest.
  std::error_code ec;
  auto abs = fs::absolute(p, ec);
  auto r = fs::weakly_canonical(abs, ec);
  return ec ? abs.lexically_normal() : r;
}

bool is_same_or_inside(const fs::path& inner, const fs::path& outer) {
  const auto a = resolve_existing_prefix(inner);
  const auto b = resolve_existing_prefix(outer);
  auto ai = a.begin();
  for (auto bi = b.begin(); bi != b.end(); ++bi, ++ai) {
    if (bi->empty()) continue;  // trailing separator
    if (ai == a.end() || *ai != *bi) return false;
  }
  return true;
}

void ensure_directory(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    throw UserError(ExitCode::kCantCreate, fmt::format("cannot create directory {}: {}", dir.string(),
                                                       ec ? ec.message() : "a file of that name exists"));
  }
}

std::string iso_time_now() {
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

DirectoryLock::DirectoryLock(const fs::path& dir, bool shared) {
  const auto path = dir / ".lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw UserError(ExitCode::kCantCreate,
                    fmt::format("cannot create lock file {}: {}", path.string(), std::strerror(errno)));
  }
  if (::flock(fd_, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
    ::close(fd_);
    fd_ = -1;
    throw UserError(
        ExitCode::kCantCreate,
        fmt::format(
            "another augment process is using the work directory {}; wait for it to finish or use another --work{}",
            dir.string(), shared ? " (shards of one sampling run may share it; other commands may not)" : ""));
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace augment
