// The image cache as tensors, and the one mapping between stored pixels and model values.
#pragma once

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

// uint8 [N, C, H, W] in 0..255 -> float [-1, 1]: the value range of both the classifier and the
// diffusion model.
torch::Tensor to_model_range(const torch::Tensor& pixels);
// float [-1, 1] -> uint8 [N, C, H, W] (clamped, rounded).
torch::Tensor to_pixels(const torch::Tensor& x);

}  // namespace augment
