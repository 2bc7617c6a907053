// One --input value: an image folder root, or NAME=DIR (the whole folder is class NAME). A value
// that names an existing folder is a folder even when it contains '=', and "=DIR" has no name,
// so it is a path too.
#pragma once

#include <filesystem>
#include <string>

namespace augment {

struct InputRoot {
  std::string class_name;  // empty: classes are the first-level folders
  std::filesystem::path path;
};

InputRoot parse_input_root(const std::string& text);

}  // namespace augment
