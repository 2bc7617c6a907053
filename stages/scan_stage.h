// scan: walk the input folders, verify every image, and write the index of usable images.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/base/config.h"
#include "pipeline/stage.h"

namespace augment {

struct GlobalOptions;

struct ScanOptions {
  static constexpr const char* kGroup = "scan";
  std::string class_map;                // CSV of source,class rows (folders or files) instead of class folders
  bool strict = false;                  // any rejected file is an error
  bool allow_empty = false;             // skip empty class folders instead of failing
  std::int64_t max_pixels = 178956970;  // refuse larger images (decompression bombs), as PIL does
  std::vector<std::string> extensions = {"jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff", "pgm", "ppm"};
  bool skip_hidden = true;     // ignore dot-files and dot-folders (.DS_Store, ._x.jpg, .git)
  bool prefetch_tiles = true;  // keep each image's tile at the cache options, so cache needs no second decode
  static void bind(OptionBinder<ScanOptions>& b);
};

std::unique_ptr<Stage> make_scan_stage();

}  // namespace augment
