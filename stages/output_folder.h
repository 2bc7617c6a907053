// The folders emit writes beside the work dir (the dataset, its report): built in a temp sibling
// (TempTree, pipeline/base/fs_util.h), checked to be augment's own before they are replaced, and made durable in one
// sync.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace augment {

// Name of the file that marks an output folder as written by augment (so --force may replace it).
inline constexpr const char* kOutputMarker = ".augment-dataset";

// Creates the new file `path` (it must not exist) with `data`; errors name the file and a full disk.
void write_new_file(const std::filesystem::path& path, const void* data, std::size_t size);
void write_new_text(const std::filesystem::path& path, const std::string& text);
// Hard link (following a symlinked source), else false.
bool try_link(const std::filesystem::path& src, const std::filesystem::path& dst);
// The output's marker: which work dir wrote it, and the id of the emit that did ({} when none).
nlohmann::json read_marker(const std::filesystem::path& out);
// Refuses a folder that is not ours, and ours without --force, unless `replaceable` says the
// folder is this work dir's own and may go (a dead emit's, or the same emit again). `what` names
// it in messages.
void check_output(const std::filesystem::path& out, bool force,
                  const std::function<bool(const nlohmann::json& marker)>& replaceable,
                  const std::string& what = "--output");
// Temp siblings of `out` left by a killed emit (their process is gone) are removed.
void remove_stale_siblings(const std::filesystem::path& out);
// Flushes everything written under `dir` (one syncfs instead of an fsync per file).
void sync_tree(const std::filesystem::path& dir);

}  // namespace augment
