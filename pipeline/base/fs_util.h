// Durable file writes and path checks shared by every stage.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace augment {

namespace fs = std::filesystem;

// Marker embedded in temporary file names so a later run can find and remove leftovers.
inline constexpr std::string_view kTempMarker = ".augment-tmp.";

// Name for a temporary sibling of `target` (same directory, so rename is atomic).
fs::path temp_path_for(const fs::path& target);

// `folder` + suffix, in the same parent (out -> out_report). What belongs with an image-folder
// dataset but is not a class goes beside it: loaders (torchvision's ImageFolder, Keras, Hugging
// Face's imagefolder) take every subfolder for a class.
fs::path folder_beside(const fs::path& folder, std::string_view suffix);

// Writes a file atomically: the content goes to a temp sibling through `write` (which receives
// the temp path), is fsync'ed, renamed over `target`, and the directory is fsync'ed. On any
// exception the temp file is removed and `target` is untouched.
void write_atomically(const fs::path& target, const std::function<void(const fs::path& tmp)>& write);

// The same for bytes already in memory (text or binary).
void write_text_atomically(const fs::path& target, std::string_view bytes);

// The last step of write_atomically for a temp file its caller wrote itself (an HDF5 library that
// wants a file name): fsync `tmp`, rename it over `target`, fsync the directory.
void commit_temp_file(const fs::path& tmp, const fs::path& target);

// Writes `bytes` to a temp sibling and renames it over `target`, without fsync: for a batch of
// files that its caller syncs together (fsync_file, fsync_directory) before vouching for them.
void write_file_unsynced(const fs::path& target, const std::vector<std::uint8_t>& bytes);

// Puts the finished folder `tmp` at `dir`: renamed when `dir` is missing or empty, else swapped
// with it in one step (RENAME_EXCHANGE; where the file system lacks it, a short window without
// `dir`) and the old tree removed. Then the parent is fsync'ed.
void replace_directory(const fs::path& tmp, const fs::path& dir);

// A directory under construction (a temp sibling of the folder it will replace): removed with its
// content unless released once it is in place.
class TempTree {
 public:
  explicit TempTree(fs::path p) : path_(std::move(p)) {}
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;
  ~TempTree() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  const fs::path& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  fs::path path_;
};

// True for an empty folder, and for a path that is not there.
bool directory_is_empty(const fs::path& dir);

// Writes all `size` bytes to `fd`, in pieces of at most 1 MiB (one write() of tens of MB cost the
// kernel two to four times the CPU time here), retrying interrupted calls. Returns 0, or the errno
// of the failure (ENOSPC for a write that made no progress); the caller words the error.
int write_to_fd(int fd, const void* data, std::size_t size);

// What to tell the user after a write failed with `err`: for a full disk, a quota or a file size
// limit, " (disk full?): free space and rerun; finished work is kept"; "" for other errors. Every
// stage words a full disk the same way.
std::string disk_full_hint(int err);

// Copies `src` to the new file `dst` (which must not exist). Returns 0, or the errno of the
// failure: ENOENT when `src` is gone, ENOSPC/EDQUOT/EFBIG for a full disk (where
// std::filesystem::copy_file reports a short copy as EIO). A partial `dst` is removed.
int copy_file_new(const fs::path& src, const fs::path& dst);

std::string read_text_file(const fs::path& path);
// Reads a whole binary file into `buf`; false when it cannot be opened or read completely.
bool read_file_bytes(const fs::path& path, std::vector<std::uint8_t>& buf);

void fsync_file(const fs::path& path);
void fsync_directory(const fs::path& dir);

// Removes temp files left by a killed run under `dir` (recursively); returns how many.
int remove_stale_temp_files(const fs::path& dir);

// True when `inner` is `outer` or lies inside it, after resolving symlinks of existing parts.
bool is_same_or_inside(const fs::path& inner, const fs::path& outer);

// Creates `dir` (and parents) or throws a UserError(kCantCreate) naming it.
void ensure_directory(const fs::path& dir);

// Seconds since the epoch as an ISO-8601 UTC string.
std::string iso_time_now();

// Advisory lock on a file in the work dir, so two runs cannot share one work dir. `shared`: the
// processes of one job that work side by side (the shards of a sampling array) share it, while
// any ordinary run still excludes them all.
class DirectoryLock {
 public:
  explicit DirectoryLock(const fs::path& dir, bool shared = false);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace augment
