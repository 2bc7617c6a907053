// `augment compare`: the research's study side by side. One work dir per conditioning method under
// WORK/compare/<method>/ shares the main work dir's data and classifier (hard links), then train,
// sample and evaluate run there through the runner; one table and one picture row per method.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "pipeline/base/config.h"

namespace augment {

class Context;
class Runner;

struct CompareOptions {
  static constexpr const char* kGroup = "compare";
  std::vector<std::string> methods = {"none", "cbn", "ac", "cfg"};  // train.conditioning values to compare
  std::int64_t images_per_class = 4;                                // synthetic images per class in the picture row
  static void bind(OptionBinder<CompareOptions>& b);
};

// The stages whose outputs every method shares: the data and the frozen classifier.
inline const std::vector<std::string> kSharedStages = {"scan", "subsample", "cache", "classifier"};

// Makes the outputs of `stages` in work dir `from` (their stage folders and records) appear in work
// dir `to`: hard links where possible, else copies; an existing file of other content is replaced.
// The records stay valid because the runner checks content hashes.
void share_stage_outputs(const std::filesystem::path& from, const std::filesystem::path& to,
                         const std::vector<std::string>& stages);

// The study table as JSON ({"methods": [...]}, one object per method) from each method's work dir
// `compare_dir/<method>`: evaluate/metrics.json and the train and sample stage records (times of the
// last run of each). A method without metrics gets a row of nulls.
nlohmann::json compare_table_json(const std::filesystem::path& compare_dir, const std::vector<std::string>& methods);
std::string compare_table_markdown(const nlohmann::json& table);

// The command: runs the shared stages in the main work dir, then each method, then writes
// WORK/compare/{table.json,table.md,samples.png}.
void run_compare(const Config& config, Context& ctx, Runner& runner);

}  // namespace augment
