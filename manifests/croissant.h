// Croissant 1.0 (MLCommons' JSON-LD format for dataset catalogues) description of an emitted
// image folder: every file with its size and SHA-256, and the manifest's columns as a record set.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace augment {

struct CroissantFile {
  std::string path;  // relative to the dataset folder, '/'-separated
  std::string sha256;
  std::uint64_t bytes = 0;
};

struct CroissantColumn {
  std::string name;
  std::string data_type;  // schema.org type: sc:Text, sc:Integer, sc:Float
  std::string description;
};

struct CroissantDataset {
  std::string name, description, created;  // created: ISO 8601 date-time
  std::vector<CroissantFile> files;        // every file of the folder, manifests included
  std::string manifest;                    // the CSV file the record set reads (one of `files`)
  std::vector<CroissantColumn> columns;
};

nlohmann::json croissant_document(const CroissantDataset& d);

// MIME type from the extension (image/png, text/csv, ...); application/octet-stream when unknown.
std::string mime_type_for(const std::string& path);

}  // namespace augment
