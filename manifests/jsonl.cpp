#include "manifests/jsonl.h"

#include <sstream>

#include <fmt/format.h>

#include "pipeline/base/errors.h"

namespace augment {

void for_each_jsonl_line(const std::string& text, const std::filesystem::path& path,
                         const std::function<void(const nlohmann::json&)>& each, const std::string& what,
                         const std::string& fix) {
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      each(nlohmann::json::parse(line));
    } catch (const std::exception& e) {
      throw UserError(ExitCode::kDataError,
                      fmt::format("{}:{}: damaged {} ({}); {}", path.string(), lineno, what, e.what(), fix));
    }
  }
}

}  // namespace augment
