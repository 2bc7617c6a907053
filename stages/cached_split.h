// A split of the image cache (work/cache/<split>.h5) as tensors, for the stages that train or
// evaluate on it.
#pragma once

#include <cstdint>
#include <filesystem>

#include <torch/torch.h>

#include "manifests/image_cache.h"

namespace augment {

struct TensorSplit {
  torch::Tensor images;  // uint8 [N, C, H, W], contiguous
  torch::Tensor labels;  // int64 [N]
  CacheInfo info;
  std::int64_t size() const { return labels.size(0); }
};

// Reads a whole split of the cache (uint8 keeps it 4x smaller than float).
TensorSplit load_cached_split(const std::filesystem::path& h5);

}  // namespace augment
