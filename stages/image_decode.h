// Turning an image file into one training tile: decode (downscaled by the JPEG decoder where the
// image is much larger than needed), convert channels, resize and crop/pad to a square.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace augment {

struct TileOptions {
  int resolution = 64;
  int channels = 3;           // 3: RGB, 1: grayscale
  std::string fit = "crop";   // crop: shorter side to size + centre crop; pad: longer side + pad; stretch
};

// Writes resolution*resolution*channels bytes (RGB order, row-major) into `out`. `width` and
// `height` come from the header probe and choose the decoder's downscaling. Throws
// std::runtime_error when the image cannot be decoded.
void decode_tile(const std::uint8_t* data, std::size_t size, int width, int height, const TileOptions& options,
                 std::uint8_t* out);

}  // namespace augment
