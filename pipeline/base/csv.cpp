#include "pipeline/base/csv.h"

#include <stdexcept>

namespace augment::csv {

std::string quote_field(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos &&
      (field.empty() || (field.front() != ' ' && field.back() != ' '))) {
    return field;
  }
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string join_row(const std::vector<std::string>& fields) {
  std::string out;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i) out += ',';
    out += quote_field(fields[i]);
  }
  return out;
}

namespace {

// Parses fields from `next()` characters; returns false when no character was available.
template <class Next>
bool parse(Next next, std::vector<std::string>& fields) {
  fields.clear();
  std::string field;
  bool quoted = false, any = false, was_quoted = false;
  int c;
  while ((c = next()) != EOF) {
    any = true;
    if (quoted) {
      if (c == '"') {
        int d = next();
        if (d == '"') {
          field += '"';
        } else {
          quoted = false;
          if (d == EOF) break;
          c = d;
          goto unquoted;
        }
      } else {
        field += static_cast<char>(c);
      }
      continue;
    }
  unquoted:
    if (c == ',') {
      fields.push_back(field);
      field.clear();
      was_quoted = false;
    } else if (c == '"' && field.empty() && !was_quoted) {
      quoted = was_quoted = true;
    } else if (c == '\n') {
      if (!field.empty() && field.back() == '\r') field.pop_back();
      fields.push_back(field);
      return true;
    } else {
      field += static_cast<char>(c);
    }
  }
  if (quoted) throw std::runtime_error("unterminated quoted field");
  if (!any) return false;
  if (!field.empty() && field.back() == '\r') field.pop_back();
  fields.push_back(field);
  return true;
}

}  // namespace

std::vector<std::string> split_row(const std::string& text) {
  std::size_t i = 0;
  std::vector<std::string> fields;
  parse([&]() -> int { return i < text.size() ? static_cast<unsigned char>(text[i++]) : EOF; }, fields);
  return fields;
}

std::optional<std::vector<std::string>> read_row(std::istream& in) {
  std::vector<std::string> fields;
  if (!parse([&]() -> int { return in.get(); }, fields)) return std::nullopt;
  return fields;
}

}  // namespace augment::csv
