// The rows of an augmented dataset, one per image, real or synthetic, in three files that emit
// writes from one list:
//   OUTPUT/manifest.csv, OUTPUT/metadata.jsonl   the columns users read (dataset_columns), the
//                                                 JSON-lines file with real and synthetic mixed
//   WORK/emit/rows.jsonl                          the same rows with the bookkeeping columns
//                                                 (_content, _bytes, _sample_file, _manifest_row)
//                                                 that emit's verify and export read back
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/croissant.h"
#include "manifests/sample_store.h"

namespace augment {

// The user-facing columns, in order, with their Croissant types.
const std::vector<CroissantColumn>& dataset_columns();

// A real training image's row: `file_name` linked or copied from `origin`, row `manifest_row` of
// subsample/manifest.jsonl, with the content hash and size scan recorded.
nlohmann::json real_dataset_row(const std::string& file_name, const std::string& class_name, int label,
                                const std::string& origin, std::size_t manifest_row, const std::string& content,
                                std::uint64_t bytes);
// A synthetic image's row, from its journal line; `weight` is emit.synthetic_weight.
nlohmann::json synthetic_dataset_row(const std::string& file_name, const std::string& class_name, const JournalEntry& e,
                                     double weight);

struct DatasetRowFiles {
  std::string manifest_csv;    // header and one row per image, in the order given
  std::string metadata_jsonl;  // the same columns, real and synthetic mixed (mixed_order)
  std::string rows_jsonl;      // every column, bookkeeping included, in the order given
};
// `rows`: JSON objects with (at least) the dataset_columns, real rows first.
DatasetRowFiles dataset_row_files(const std::vector<nlohmann::json>& rows);

// The order of metadata.jsonl's rows: real and synthetic evenly mixed, starting with one of each.
// Readers that infer column types from the first block of a JSON-lines file (Hugging Face
// `datasets`, pyarrow) would otherwise type the synthetic-only columns as null from tens of
// thousands of leading real rows and fail on the first synthetic one.
std::vector<std::size_t> mixed_order(const std::vector<nlohmann::json>& rows);

// One row of WORK/emit/rows.jsonl as the stages after emit read it.
struct EmittedRow {
  std::string file_name;  // relative to the dataset folder
  int label = 0;
  bool synthetic = false;
  std::int64_t manifest_row = -1;      // real: row of subsample/manifest.jsonl
  std::string sample_file;             // synthetic: PNG relative to work/sample
  std::string content;                 // content hash (source file or PNG)
  std::optional<std::uint64_t> bytes;  // file size, where emit recorded it
};
// Throws UserError: kNoInput when the file is missing, kDataError naming file:line when a line
// is damaged.
std::vector<EmittedRow> read_emitted_rows(const std::filesystem::path& path);

}  // namespace augment
