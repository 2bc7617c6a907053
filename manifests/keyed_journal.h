// A JSON-lines journal of finished pieces of work, each line {"key": K, "run": {...}}: a stopped
// stage keeps what it finished, and a line whose key differs from the current one (other inputs or
// options) is dropped. Used for evaluate's downstream runs (work/evaluate/downstream_runs.jsonl).
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace augment {

class KeyedJournal {
 public:
  // Reads the lines of `key` (torn or foreign lines, and runs `parse` throws on, are dropped) and
  // rewrites the file with them.
  KeyedJournal(std::filesystem::path path, std::string key,
               const std::function<void(const nlohmann::json& run)>& parse = {});
  // The "run" objects of the kept lines, in file order.
  const std::vector<nlohmann::json>& runs() const { return runs_; }
  // Adds a line and rewrites the file atomically.
  void append(const nlohmann::json& run);

 private:
  std::filesystem::path path_;
  std::string key_;
  std::string text_;
  std::vector<nlohmann::json> runs_;
};

}  // namespace augment
