// Turning an image file into one training tile: decode (JPEG downscaled in the DCT where the image
// is much larger than needed), apply EXIF orientation, convert channels, resize, crop/pad to a
// square. Decoding reads all of the file's image data, so a successful decode also verifies it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace augment {

struct TileOptions {
  int resolution = 64;
  int channels = 3;           // 3: RGB, 1: grayscale
  std::string fit = "crop";   // crop: shorter side to size + centre crop; pad: longer side + pad; stretch

  std::string key() const;    // identifies the options, for reusing tiles made elsewhere
};

// Writes resolution*resolution*channels bytes (RGB order, row-major) into `out`. `width` and
// `height` come from the header probe and choose the decoder's downscaling. Returns "" on success,
// else why the file cannot be used ("truncated ...", "cannot be decoded ...").
std::string decode_tile(const std::uint8_t* data, std::size_t size, int width, int height, const TileOptions& options,
                        std::uint8_t* out);

// EXIF orientation (1..8) of a JPEG, 1 when absent.
int jpeg_exif_orientation(const std::uint8_t* data, std::size_t size);

}  // namespace augment
