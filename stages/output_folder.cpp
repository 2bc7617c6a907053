#include "stages/output_folder.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

using nlohmann::json;

void write_new_file(const fs::path& path, const void* data, std::size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw UserError(ExitCode::kIoError,
                    fmt::format("cannot create {}: {}{}", path.string(), std::strerror(err), disk_full_hint(err)));
  }
  if (const int err = write_to_fd(fd, data, size); err != 0) {
    ::close(fd);
    throw UserError(ExitCode::kIoError,
                    fmt::format("cannot write {}: {}{}", path.string(), std::strerror(err), disk_full_hint(err)));
  }
  if (::close(fd) != 0) {
    const int err = errno;
    throw UserError(ExitCode::kIoError,
                    fmt::format("cannot write {}: {}{}", path.string(), std::strerror(err), disk_full_hint(err)));
  }
}

void write_new_text(const fs::path& path, const std::string& text) { write_new_file(path, text.data(), text.size()); }

// Hard link (following a symlinked source), else false.
bool try_link(const fs::path& src, const fs::path& dst) {
  return ::linkat(AT_FDCWD, src.c_str(), AT_FDCWD, dst.c_str(), AT_SYMLINK_FOLLOW) == 0;
}

// The output's marker: which work dir wrote it, and the id of the emit that did.
json read_marker(const fs::path& out) {
  try {
    return json::parse(read_text_file(out / kOutputMarker));
  } catch (const std::exception&) {
    return json::object();
  }
}

// Refuses a folder that is not ours, and ours without --force, unless `replaceable` says the
// folder is this work dir's own and may go (a dead emit's, or the same emit again). `what` names
// it in messages.
void check_output(const fs::path& out, bool force, const std::function<bool(const json& marker)>& replaceable,
                  const std::string& what) {
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  if (!fs::is_directory(out, ec)) {
    throw UserError(ExitCode::kCantCreate,
                    fmt::format("{} {} exists and is not a folder; choose another path", what, out.string()));
  }
  if (directory_is_empty(out)) return;
  if (!fs::is_regular_file(out / kOutputMarker, ec)) {
    throw UserError(
        ExitCode::kCantCreate,
        fmt::format("{} {} is not empty and was not written by augment (no {} file); augment replaces only its own "
                    "output: choose a new or empty folder",
                    what, out.string(), kOutputMarker));
  }
  if (!force && !replaceable(read_marker(out))) {
    throw UserError(
        ExitCode::kCantCreate,
        fmt::format(
            "{} {} holds the output of an earlier emit with other settings or of another work dir; pass --force "
            "to replace it",
            what, out.string()));
  }
}

// Temp siblings of `out` left by a killed emit (their process is gone).
void remove_stale_siblings(const fs::path& out) {
  const std::string prefix = "." + out.filename().string() + std::string(kTempMarker);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out.parent_path(), ec)) {
    const auto name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const auto pid = std::atol(name.c_str() + prefix.size());
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) == 0) continue;  // another live emit
    std::error_code rm;
    fs::remove_all(e.path(), rm);
  }
}

// Flushes everything written under `dir` (one syncfs instead of an fsync per file).
void sync_tree(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  const int rc = ::syncfs(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0)
    throw UserError(ExitCode::kIoError, fmt::format("cannot flush {} to disk: {}{}", dir.string(), std::strerror(err),
                                                    disk_full_hint(err)));
}

}  // namespace augment
