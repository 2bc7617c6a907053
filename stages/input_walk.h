// What scan reads: the files under the --input folders (NAME=DIR roots, class folders, a
// --class-map CSV), found by name and listed with their size and modification time, before any
// of them is opened.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "stages/scan_stage.h"

namespace augment {

// A file that the walk found, with the class it belongs to.
struct ScanCandidate {
  std::filesystem::path path;
  std::string class_name;
  std::uint64_t bytes = 0;
  long long mtime_ns = 0;
};

struct ScanWalk {
  std::vector<ScanCandidate> files;        // sorted by class, then path
  std::vector<std::string> classes;        // every class found, sorted (may include empty ones)
  std::vector<std::string> empty_classes;  // classes without candidate files
  std::int64_t other_extensions = 0, hidden = 0, outside_classes = 0, unmapped = 0;
};

// Finds the candidate files of the run's inputs. Throws UserError for missing inputs.
ScanWalk walk_inputs(const GlobalOptions& global, const ScanOptions& options);

// True when `s` is well-formed UTF-8 (a path that is not cannot go into the JSON manifests).
bool valid_utf8(const std::string& s);

}  // namespace augment
