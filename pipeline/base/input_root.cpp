#include "pipeline/base/input_root.h"

namespace augment {

InputRoot parse_input_root(const std::string& text) {
  std::error_code ec;
  const auto eq = text.find('=');
  if (std::filesystem::is_directory(text, ec) || eq == std::string::npos || eq == 0) return {"", text};
  return {text.substr(0, eq), text.substr(eq + 1)};
}

}  // namespace augment
