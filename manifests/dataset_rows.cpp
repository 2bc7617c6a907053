#include "manifests/dataset_rows.h"

#include <sstream>

#include <fmt/format.h>

#include "manifests/jsonl.h"
#include "pipeline/base/csv.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

using nlohmann::json;

const std::vector<CroissantColumn>& dataset_columns() {
  static const std::vector<CroissantColumn> columns = {
      {"file_name", "sc:Text", "image path relative to the dataset folder: <class folder>/<real_|synthetic_>name"},
      {"class", "sc:Text", "class name"},
      {"label", "sc:Integer", "class index, in the order of dataset.json's class_names"},
      {"source", "sc:Text", "real or synthetic"},
      {"split", "sc:Text", "split the image belongs to (train)"},
      {"origin", "sc:Text", "real images: the input file it came from"},
      {"seed", "sc:Integer", "synthetic images: the seed the image was generated from"},
      {"sampler", "sc:Text", "synthetic images: the diffusion sampler"},
      {"steps", "sc:Integer", "synthetic images: sampler steps"},
      {"guidance", "sc:Float", "synthetic images: classifier-free guidance scale"},
      {"conditioning", "sc:Text", "synthetic images: conditioning method of the model (none, cbn, ac, cfg)"},
      {"checkpoint", "sc:Text", "synthetic images: fingerprint of the model checkpoint"},
      {"confidence", "sc:Float",
       "synthetic images: the frozen classifier's probability of the intended class, when filtered"},
      {"tries", "sc:Integer", "synthetic images: draws the classifier filter needed"},
      {"weight", "sc:Float", "training weight: 1 for real images, emit.synthetic_weight for synthetic ones"}};
  return columns;
}

json real_dataset_row(const std::string& file_name, const std::string& class_name, int label, const std::string& origin,
                      std::size_t manifest_row, const std::string& content, std::uint64_t bytes) {
  json j = {{"file_name", file_name}, {"class", class_name},     {"label", label},
            {"source", "real"},       {"split", "train"},        {"origin", origin},
            {"seed", nullptr},        {"sampler", nullptr},      {"steps", nullptr},
            {"guidance", nullptr},    {"conditioning", nullptr}, {"checkpoint", nullptr},
            {"confidence", nullptr},  {"tries", nullptr},        {"weight", 1.0}};
  j["_manifest_row"] = manifest_row;
  j["_content"] = content;
  j["_bytes"] = bytes;
  return j;
}

json synthetic_dataset_row(const std::string& file_name, const std::string& class_name, const JournalEntry& e,
                           double weight) {
  json j = {{"file_name", file_name}, {"class", class_name},
            {"label", e.label},       {"source", "synthetic"},
            {"split", "train"},       {"origin", nullptr},
            {"seed", e.seed},         {"confidence", e.confidence ? json(*e.confidence) : json(nullptr)},
            {"tries", e.tries},       {"weight", weight}};
  j.update(sampling_settings_json(e.settings, {"sampler", "steps", "guidance", "conditioning", "checkpoint"}));
  j["_sample_file"] = e.file;
  j["_content"] = e.png_hash;
  j["_bytes"] = e.png_bytes;
  return j;
}

std::vector<std::size_t> mixed_order(const std::vector<json>& rows) {
  std::vector<std::size_t> real, synthetic;
  for (std::size_t i = 0; i < rows.size(); ++i) (rows[i]["source"] == "synthetic" ? synthetic : real).push_back(i);
  std::vector<std::size_t> order;
  std::size_t r = 0, s = 0;
  while (r < real.size() || s < synthetic.size()) {
    // Synthetic next while its share so far is below its share of the whole (after one real row).
    const bool take_synthetic =
        s < synthetic.size() && (r == real.size() || (r > 0 && s * real.size() <= r * synthetic.size()));
    order.push_back(take_synthetic ? synthetic[s++] : real[r++]);
  }
  return order;
}

namespace {

std::string csv_cell(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

}  // namespace

DatasetRowFiles dataset_row_files(const std::vector<json>& rows) {
  const auto& columns = dataset_columns();
  std::vector<std::string> header;
  for (const auto& k : columns) header.push_back(k.name);
  DatasetRowFiles out;
  out.manifest_csv = csv::join_row(header) + "\n";
  for (const auto& j : rows) {
    std::vector<std::string> cells;
    for (const auto& k : columns) cells.push_back(csv_cell(j[k.name]));
    out.manifest_csv += csv::join_row(cells) + "\n";
    out.rows_jsonl += j.dump() + "\n";
  }
  for (const auto i : mixed_order(rows)) {
    json meta = json::object();
    for (const auto& k : columns) meta[k.name] = rows[i][k.name];
    out.metadata_jsonl += meta.dump() + "\n";
  }
  return out;
}

std::vector<EmittedRow> read_emitted_rows(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    throw UserError(ExitCode::kNoInput,
                    fmt::format("{} is missing: run `augment emit --output DIR` first", path.string()));
  }
  std::vector<EmittedRow> rows;
  for_each_jsonl_line(
      read_text_file(path), path,
      [&](const json& j) {
        EmittedRow r;
        r.file_name = j.at("file_name").get<std::string>();
        r.label = j.at("label").get<int>();
        r.synthetic = j.at("source").get<std::string>() == "synthetic";
        if (r.synthetic)
          r.sample_file = j.at("_sample_file").get<std::string>();
        else
          r.manifest_row = j.at("_manifest_row").get<std::int64_t>();
        r.content = j.at("_content").get<std::string>();
        if (j.contains("_bytes")) r.bytes = j.at("_bytes").get<std::uint64_t>();
        rows.push_back(std::move(r));
      },
      "line", "rerun `augment emit --force`");
  return rows;
}

}  // namespace augment
