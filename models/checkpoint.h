// Rolling training checkpoints: one file per saved step, written atomically, the newest that
// loads wins, a damaged one (truncated by a crash or a full disk) falls back to the one before.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace augment {

// Digest of the tensors (names, dtypes, shapes, values) and plain values of a LibTorch archive:
// equal for equal weights, though two saves of them differ in their bytes. Throws when the file
// is no archive.
std::string archive_fingerprint(const std::filesystem::path& path);

// Checkpoint files in `dir`, newest (highest step) first.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& dir);

// Writes `dir/step-<step>.pt` atomically from what `fill` puts into the archive, then deletes the
// oldest files so that at most `keep` remain.
void save_checkpoint(const std::filesystem::path& dir, std::int64_t step,
                     const std::function<void(torch::serialize::OutputArchive&)>& fill, int keep);

enum class RestoreResult { kRestored, kIncompatible };

struct RestoredCheckpoint {
  std::filesystem::path path;
  std::vector<std::string> skipped;  // "file: why" for each newer file that could not be used
};

// Tries the checkpoints newest first: each is read completely (so a truncated file fails before
// anything is touched) and handed to `restore`. A file that fails to read or makes `restore`
// throw is reported in `skipped` and the previous one is tried. Stops at the first kRestored;
// kIncompatible files (written under other options) are skipped too. Returns nullopt when no
// file could be used. The archive is mapped onto `device`.
std::optional<RestoredCheckpoint> restore_latest_checkpoint(
    const std::filesystem::path& dir, const torch::Device& device,
    const std::function<RestoreResult(torch::serialize::InputArchive&)>& restore,
    std::vector<std::string>* skipped = nullptr);

}  // namespace augment
