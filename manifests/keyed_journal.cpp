#include "manifests/keyed_journal.h"

#include <fstream>

#include "pipeline/base/fs_util.h"

namespace augment {

using nlohmann::json;

KeyedJournal::KeyedJournal(std::filesystem::path path, std::string key,
                           const std::function<void(const json& run)>& parse)
    : path_(std::move(path)), key_(std::move(key)) {
  std::ifstream in(path_);
  std::string line;
  while (std::getline(in, line)) {
    try {
      const auto j = json::parse(line);
      if (j.at("key") != key_) continue;
      if (parse) parse(j.at("run"));
      runs_.push_back(j.at("run"));
      text_ += line + "\n";
    } catch (const std::exception&) {
      // a torn or foreign line: that run is done again
    }
  }
  ensure_directory(path_.parent_path());
  write_text_atomically(path_, text_);
}

void KeyedJournal::append(const json& run) {
  text_ += json({{"key", key_}, {"run", run}}).dump() + "\n";
  runs_.push_back(run);
  write_text_atomically(path_, text_);
}

}  // namespace augment
