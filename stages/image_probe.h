// Reading what an image file is without decoding it (format, size, channels).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace augment {

struct ImageProbe {
  std::string format;  // jpeg, png, bmp, webp, tiff, pnm; empty when not recognised
  int width = 0;
  int height = 0;
  int channels = 0;
  int bit_depth = 8;
  std::string error;  // why the header could not be read ("" when fine)
};

// Parses the header only: cheap, so oversized images are refused before any decoding.
ImageProbe probe_image(const std::uint8_t* data, std::size_t size);

}  // namespace augment
