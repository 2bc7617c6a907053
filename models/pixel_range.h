// The one mapping between stored pixels and model values.
#pragma once

#include <torch/torch.h>

namespace augment {

// uint8 [N, C, H, W] in 0..255 -> float [-1, 1]: the value range of both the classifier and the
// diffusion model.
torch::Tensor to_model_range(const torch::Tensor& pixels);
// uint8 pixels as above; float images (already in [-1, 1]) as fp32.
torch::Tensor as_model_input(const torch::Tensor& images);
// float [-1, 1] -> uint8 [N, C, H, W] (clamped, rounded).
torch::Tensor to_pixels(const torch::Tensor& x);

}  // namespace augment
