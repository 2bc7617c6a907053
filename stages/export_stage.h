// export: the emitted dataset as HDF5 shards for training (see manifests/hdf5_shard.h) with an
// index.json listing each shard's count and SHA-256. Real images come from the cache's train split
// (already at training resolution), synthetic ones from the sample store's PNGs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "pipeline/base/config.h"
#include "pipeline/stage.h"

namespace augment {

struct ExportOptions {
  static constexpr const char* kGroup = "export";
  std::int64_t shard_size = 10000;  // images per shard file
  std::string name = "train";       // shard files are <name>-00000-of-00008.h5
  std::string dir;                  // where the shards go; empty: <output>/hdf5
  std::int64_t deflate = 4;         // deflate level of the images dataset (0: none)
  double min_saving = 0.10;         // store a block's chunks uncompressed when deflate saves less than this
  static void bind(OptionBinder<ExportOptions>& b);
};

std::unique_ptr<Stage> make_export_stage();

}  // namespace augment
