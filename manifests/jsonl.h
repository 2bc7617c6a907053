// Reading the JSON-lines files augment writes (one object per line), strictly: a line that does
// not parse, or that the caller cannot use, is an error naming the file and line.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace augment {

// Hands every non-empty line of `text` (the contents of `path`), parsed, to `each` in order.
// Throws UserError(kDataError) "PATH:LINE: damaged <what> (why); <fix>" for a line that does not
// parse or on which `each` throws.
void for_each_jsonl_line(const std::string& text, const std::filesystem::path& path,
                         const std::function<void(const nlohmann::json&)>& each, const std::string& what,
                         const std::string& fix);

}  // namespace augment
