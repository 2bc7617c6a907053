// RFC 4180 CSV rows: fields with commas, quotes or newlines are quoted, quotes doubled.
#pragma once

#include <istream>
#include <optional>
#include <string>
#include <vector>

namespace augment::csv {

std::string quote_field(const std::string& field);
std::string join_row(const std::vector<std::string>& fields);  // no trailing newline
// Splits one logical row given as a string (may contain quoted newlines).
std::vector<std::string> split_row(const std::string& text);
// Reads the next logical row from a stream (handles quoted newlines, CRLF); nullopt at EOF.
std::optional<std::vector<std::string>> read_row(std::istream& in);

}  // namespace augment::csv
