// cache: decode every chosen image once into training-resolution tiles, one HDF5 file per split.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "pipeline/base/config.h"
#include "pipeline/stage.h"
#include "stages/image_decode.h"

namespace augment {

struct CacheOptions {
  static constexpr const char* kGroup = "cache";
  std::int64_t resolution = 64;  // side of the square training images
  std::int64_t channels = 3;     // 3: RGB, 1: grayscale
  Fit fit = Fit::kCrop;
  std::int64_t shard_size = 1024;  // images per resumable part
  static void bind(OptionBinder<CacheOptions>& b);
};

inline const char* const kSplits[] = {"train", "val", "test"};

struct TileOptions;
TileOptions tile_options(const CacheOptions& options);
// Identifies tiles made at `tile` options for images with these concatenated content hashes, in order.
std::string tile_key(const TileOptions& tile, const std::string& hashes_in_order);

std::unique_ptr<Stage> make_cache_stage();

}  // namespace augment
