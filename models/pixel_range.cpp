#include "models/pixel_range.h"

namespace augment {

torch::Tensor to_model_range(const torch::Tensor& pixels) { return pixels.to(torch::kFloat32).div(127.5).sub(1.0); }

torch::Tensor as_model_input(const torch::Tensor& images) {
  return images.scalar_type() == torch::kUInt8 ? to_model_range(images) : images.to(torch::kFloat32);
}

torch::Tensor to_pixels(const torch::Tensor& x) {
  return x.to(torch::kFloat32).add(1.0).mul(127.5).round().clamp(0, 255).to(torch::kUInt8);
}

}  // namespace augment
