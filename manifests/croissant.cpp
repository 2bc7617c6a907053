#include "manifests/croissant.h"

#include <algorithm>
#include <cctype>
#include <map>

#include <nlohmann/json.hpp>

namespace augment {
namespace {

// A JSON-LD @id for a file: its path with every byte outside RFC 3986's unreserved set and '/'
// percent-encoded. mlcroissant refuses ids with spaces (escaped or not otherwise), and class folders
// have them; `name` and `contentUrl` keep the plain path.
std::string id_for(const std::string& path) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : path) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace

using nlohmann::json;

std::string mime_type_for(const std::string& path) {
  static const std::map<std::string, std::string> kTypes = {{".png", "image/png"},
                                                            {".jpg", "image/jpeg"},
                                                            {".jpeg", "image/jpeg"},
                                                            {".bmp", "image/bmp"},
                                                            {".gif", "image/gif"},
                                                            {".tif", "image/tiff"},
                                                            {".tiff", "image/tiff"},
                                                            {".webp", "image/webp"},
                                                            {".ppm", "image/x-portable-pixmap"},
                                                            {".pgm", "image/x-portable-graymap"},
                                                            {".csv", "text/csv"},
                                                            {".json", "application/json"},
                                                            {".jsonl", "application/jsonlines"}};
  const auto dot = path.find_last_of('.');
  const auto slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "application/octet-stream";
  std::string ext = path.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto it = kTypes.find(ext);
  return it == kTypes.end() ? "application/octet-stream" : it->second;
}

json croissant_document(const CroissantDataset& d) {
  // The context every Croissant 1.0 document carries (from the specification).
  const json context = {{"@language", "en"},
                        {"@vocab", "https://schema.org/"},
                        {"citeAs", "cr:citeAs"},
                        {"column", "cr:column"},
                        {"conformsTo", "dct:conformsTo"},
                        {"cr", "http://mlcommons.org/croissant/"},
                        {"rai", "http://mlcommons.org/croissant/RAI/"},
                        {"data", {{"@id", "cr:data"}, {"@type", "@json"}}},
                        {"dataType", {{"@id", "cr:dataType"}, {"@type", "@vocab"}}},
                        {"dct", "http://purl.org/dc/terms/"},
                        {"examples", {{"@id", "cr:examples"}, {"@type", "@json"}}},
                        {"extract", "cr:extract"},
                        {"field", "cr:field"},
                        {"fileProperty", "cr:fileProperty"},
                        {"fileObject", "cr:fileObject"},
                        {"fileSet", "cr:fileSet"},
                        {"format", "cr:format"},
                        {"includes", "cr:includes"},
                        {"isLiveDataset", "cr:isLiveDataset"},
                        {"jsonPath", "cr:jsonPath"},
                        {"key", "cr:key"},
                        {"md5", "cr:md5"},
                        {"parentField", "cr:parentField"},
                        {"path", "cr:path"},
                        {"recordSet", "cr:recordSet"},
                        {"references", "cr:references"},
                        {"regex", "cr:regex"},
                        {"repeated", "cr:repeated"},
                        {"replace", "cr:replace"},
                        {"sc", "https://schema.org/"},
                        {"separator", "cr:separator"},
                        {"source", "cr:source"},
                        {"subField", "cr:subField"},
                        {"transform", "cr:transform"}};
  json distribution = json::array();
  for (const auto& f : d.files) {
    distribution.push_back({{"@type", "cr:FileObject"},
                            {"@id", id_for(f.path)},
                            {"name", f.path},
                            {"contentUrl", f.path},
                            {"contentSize", std::to_string(f.bytes) + " B"},
                            {"encodingFormat", mime_type_for(f.path)},
                            {"sha256", f.sha256}});
  }
  json fields = json::array();
  for (const auto& c : d.columns) {
    fields.push_back({{"@type", "cr:Field"},
                      {"@id", "images/" + c.name},
                      {"name", c.name},
                      {"description", c.description},
                      {"dataType", c.data_type},
                      {"source", {{"fileObject", {{"@id", id_for(d.manifest)}}}, {"extract", {{"column", c.name}}}}}});
  }
  return {{"@context", context},
          {"@type", "sc:Dataset"},
          {"conformsTo", "http://mlcommons.org/croissant/1.0"},
          {"name", d.name},
          {"description", d.description},
          {"dateCreated", d.created},
          {"distribution", distribution},
          {"recordSet", json::array({{{"@type", "cr:RecordSet"},
                                      {"@id", "images"},
                                      {"name", "images"},
                                      {"description", "one record per image: the rows of " + d.manifest},
                                      {"key", {{"@id", "images/file_name"}}},
                                      {"field", fields}}})}};
}

}  // namespace augment
