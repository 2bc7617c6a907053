// Where `augment sample` keeps its images so a killed run regenerates nothing already written:
//   work/sample/images/<label, 3 digits>/<index, 6 digits>.png    one PNG per kept image, atomic
//   work/sample/journal-<K>-of-<N>.jsonl                            one JSON line per finished image
// A shard appends to its own journal only; lines are fsync'ed per batch, after the batch's PNGs.
// An image counts as done only when its PNG and its journal line both exist (and agree in size).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/sample_plan.h"

namespace augment {

// What shaped an image besides its seed; written into every journal line and the dataset card.
struct SamplingSettings {
  std::string sampler;  // e.g. "ddim"
  std::int64_t steps = 0;
  double guidance = 0.0;                      // classifier-free guidance scale (0 when not used)
  std::string conditioning;                   // cfg | cbn | ac | none
  std::string checkpoint;                     // fingerprint of the model weights
  int resolution = 0;                         // side of the square images (the cache resolution)
  int channels = 3;                           // 3 RGB, 1 gray
  double eta = 0.0;                           // ddim's noise share
  bool clip = true;                           // predicted clean image clamped at every step
  double guided_from = 0.0, guided_to = 1.0;  // guidance interval as shares t/T of the noise schedule
  std::string key() const;                    // hash of all of the above
};

// The settings under the names every file augment writes gives them (journal lines, the dataset
// card and its rows, the evaluation metrics); `fields` picks the ones a file carries, from
// sampler, steps, eta, clip, guidance, guidance_interval, conditioning, checkpoint, resolution,
// channels. An unknown name throws std::invalid_argument.
nlohmann::json sampling_settings_json(const SamplingSettings& s, std::initializer_list<std::string_view> fields);

struct JournalEntry {
  std::string class_name;
  int label = 0;
  std::int64_t index = 0;
  std::uint64_t run_seed = 0;
  std::uint64_t seed = 0;  // seed of the kept try (of the last try when rejected)
  int tries = 1;
  bool accepted = true;              // false: the filter rejected every try; no PNG
  std::optional<double> confidence;  // of the kept try (best try when rejected)
  SamplingSettings settings;
  std::string file;  // PNG relative to the sample dir; empty when rejected
  std::uint64_t png_bytes = 0;
  std::string png_hash;  // XXH3-128 of the PNG file
};

std::string sample_image_relpath(int label, std::int64_t index);  // images/003/000017.png
std::filesystem::path journal_path(const std::filesystem::path& sample_dir, const ShardSpec& shard);
// Journals present in `sample_dir` with the shard each names, sorted by (N, K).
std::vector<std::pair<ShardSpec, std::filesystem::path>> find_journals(const std::filesystem::path& sample_dir);

// Reads a journal, ignoring a torn tail (a last line cut short by kill -9 or power loss).
// `torn_bytes` receives the length of the ignored tail. A damaged line before valid ones is an
// error naming file and line.
std::vector<JournalEntry> read_journal(const std::filesystem::path& path, std::uint64_t* torn_bytes = nullptr);
// A journal with the length of its valid prefix: everything up to the end of the last parseable
// line. Lines that do not parse after it are the torn tail of an interrupted append.
struct ParsedJournal {
  std::vector<JournalEntry> entries;
  std::uint64_t valid_bytes = 0;
  std::uint64_t total_bytes = 0;
};
ParsedJournal parse_journal(const std::filesystem::path& path);

// A shard's journal opened for appending; a torn tail (beyond `valid_bytes`) is cut off first so
// new lines start clean. Every append is fsync'ed.
class JournalWriter {
 public:
  JournalWriter(const std::filesystem::path& path, std::uint64_t valid_bytes);
  ~JournalWriter();
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;
  void append(const std::vector<JournalEntry>& entries);

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

// True when the PNG a journal line names is there with the size and hash the line gives.
bool png_matches(const std::filesystem::path& sample_dir, const JournalEntry& e);
// The first kept image of `plan` that `journals` name and that is missing or differs from its
// line ("output missing or modified: PATH"), or "" when all are intact.
std::string damaged_sample(const std::filesystem::path& sample_dir, const SamplePlan& plan,
                           const std::vector<std::filesystem::path>& journals);

// PNG bytes of an image (RGB or gray, HWC).
std::vector<std::uint8_t> encode_png(const std::uint8_t* pixels, int resolution, int channels);
// Decodes a PNG to HWC RGB/gray with exactly `channels`; "" on success, else why not.
std::string decode_png(const std::vector<std::uint8_t>& png, int resolution, int channels, std::uint8_t* out);

}  // namespace augment

namespace augment {

// All finished samples of a sample dir, merged over the journals of every shard.
struct MergedSamples {
  std::vector<JournalEntry> accepted;  // planned items with a kept image, by (label, index)
  std::vector<JournalEntry> rejected;  // planned items the filter gave up on
  SamplingSettings settings;
  std::uint64_t run_seed = 0;
  int shard_count = 0;
  std::vector<std::filesystem::path> journals;
};

// Checks that the journals form one complete set (shards 0..N-1 of one N, every planned item
// present exactly once, one set of sampling settings) and returns the planned items' entries.
// Throws UserError naming the missing shard, duplicated item or disagreeing journals.
MergedSamples merge_journals(const std::filesystem::path& sample_dir, const SamplePlan& plan);

}  // namespace augment
