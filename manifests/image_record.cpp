#include "manifests/image_record.h"

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "manifests/jsonl.h"
#include "pipeline/base/csv.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

using nlohmann::json;

static json to_json(const ImageRecord& r) {
  json j = {{"path", r.path},           {"class", r.class_name}, {"format", r.format},
            {"width", r.width},         {"height", r.height},    {"channels", r.channels},
            {"bit_depth", r.bit_depth}, {"bytes", r.bytes},      {"hash", r.hash}};
  if (r.label >= 0) {
    j["label"] = r.label;
    j["split"] = r.split;
  }
  return j;
}

static ImageRecord from_json(const json& j) {
  ImageRecord r;
  r.path = j.at("path").get<std::string>();
  r.class_name = j.at("class").get<std::string>();
  r.format = j.value("format", "");
  r.width = j.value("width", 0);
  r.height = j.value("height", 0);
  r.channels = j.value("channels", 0);
  r.bit_depth = j.value("bit_depth", 8);
  r.bytes = j.value("bytes", 0ull);
  r.hash = j.value("hash", "");
  r.label = j.value("label", -1);
  r.split = j.value("split", "");
  return r;
}

void write_records_jsonl(const std::filesystem::path& path, const std::vector<ImageRecord>& records) {
  write_atomically(path, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    for (const auto& r : records) out << to_json(r).dump() << '\n';
    if (!out.flush()) throw UserError(ExitCode::kIoError, fmt::format("cannot write {}", tmp.string()));
  });
}

std::vector<ImageRecord> read_records_jsonl(const std::filesystem::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw UserError(ExitCode::kNoInput,
                    fmt::format("cannot read {}; run the stage that writes it first", path.string()));
  std::vector<ImageRecord> records;
  for_each_jsonl_line(
      read_text_file(path), path, [&](const json& j) { records.push_back(from_json(j)); }, "manifest line",
      "rerun the stage that writes it with --force");
  return records;
}

void write_records_csv(const std::filesystem::path& path, const std::vector<ImageRecord>& records, bool with_split) {
  write_atomically(path, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    std::vector<std::string> header = {"path",     "class",     "format", "width", "height",
                                       "channels", "bit_depth", "bytes",  "hash"};
    if (with_split) {
      header.push_back("label");
      header.push_back("split");
    }
    out << csv::join_row(header) << '\n';
    for (const auto& r : records) {
      std::vector<std::string> row = {r.path,
                                      r.class_name,
                                      r.format,
                                      std::to_string(r.width),
                                      std::to_string(r.height),
                                      std::to_string(r.channels),
                                      std::to_string(r.bit_depth),
                                      std::to_string(r.bytes),
                                      r.hash};
      if (with_split) {
        row.push_back(std::to_string(r.label));
        row.push_back(r.split);
      }
      out << csv::join_row(row) << '\n';
    }
    if (!out.flush()) throw UserError(ExitCode::kIoError, fmt::format("cannot write {}", tmp.string()));
  });
}

int ClassList::index_of(const std::string& name) const {
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return static_cast<int>(i);
  }
  return -1;
}

void write_class_list(const std::filesystem::path& path, const ClassList& classes) {
  json j;
  j["classes"] = classes.names;
  j["class_to_idx"] = json::object();
  j["counts"] = json::object();
  for (std::size_t i = 0; i < classes.names.size(); ++i) {
    j["class_to_idx"][classes.names[i]] = i;
    j["counts"][classes.names[i]] = i < classes.counts.size() ? classes.counts[i] : 0;
  }
  write_text_atomically(path, j.dump(2) + "\n");
}

ClassList read_class_list(const std::filesystem::path& path) {
  ClassList c;
  json j;
  try {
    j = json::parse(read_text_file(path));
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    throw UserError(ExitCode::kDataError, fmt::format("{} is damaged ({}); rerun the stage that writes it with --force",
                                                      path.string(), e.what()));
  }
  c.names = j.at("classes").get<std::vector<std::string>>();
  for (const auto& n : c.names) c.counts.push_back(j["counts"].value(n, 0));
  return c;
}

}  // namespace augment
