// One image of the dataset as the scan found it, and (after subsample) its label and split.
// Stored as JSON Lines (read back by later stages) and CSV (for people and spreadsheets).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace augment {

struct ImageRecord {
  std::string path;        // as found under the input root (symlinks not resolved)
  std::string class_name;  // exactly the folder name (or NAME= / class-map name)
  std::string format;      // jpeg, png, bmp, webp, tiff, pnm
  int width = 0;
  int height = 0;
  int channels = 0;  // as stored in the file: 1 gray, 2 gray+alpha, 3 colour, 4 colour+alpha
  int bit_depth = 8;
  std::uint64_t bytes = 0;
  std::string hash;   // XXH3-128 of the file's bytes
  int label = -1;     // index into the run's class list (after subsample)
  std::string split;  // train, val or test (after subsample)
};

void write_records_jsonl(const std::filesystem::path& path, const std::vector<ImageRecord>& records);
std::vector<ImageRecord> read_records_jsonl(const std::filesystem::path& path);
// CSV with a header; `with_split` adds the label and split columns.
void write_records_csv(const std::filesystem::path& path, const std::vector<ImageRecord>& records, bool with_split);

// Class list with its name -> index map, as JSON: {"classes": [...], "class_to_idx": {...}, "counts": {...}}.
struct ClassList {
  std::vector<std::string> names;               // sorted
  std::vector<std::int64_t> counts;             // images per class, parallel to names
  int index_of(const std::string& name) const;  // -1 when absent
};
void write_class_list(const std::filesystem::path& path, const ClassList& classes);
ClassList read_class_list(const std::filesystem::path& path);

}  // namespace augment
