// Turning an image file into one training tile: decode (JPEG downscaled in the DCT where the image
// is much larger than needed), apply EXIF orientation, convert channels, resize, crop/pad to a
// square. Decoding reads all of the file's image data, so a successful decode also verifies it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "pipeline/base/named_enum.h"

namespace augment {

// How a non-square image becomes a square tile: crop (shorter side to size, centre crop), pad
// (longer side to size, padded), stretch (both sides to size).
enum class Fit { kCrop, kPad, kStretch, kLast = kStretch };
inline constexpr NameTable<Fit, 3> kFitNames{{{{Fit::kCrop, "crop"}, {Fit::kPad, "pad"}, {Fit::kStretch, "stretch"}}}};
static_assert(kFitNames.complete());
constexpr const auto& names_of(Fit) { return kFitNames; }

struct TileOptions {
  int resolution = 64;
  int channels = 3;  // 3: RGB, 1: grayscale
  Fit fit = Fit::kCrop;

  std::string key() const;  // identifies the options, for reusing tiles made elsewhere
};

// Writes resolution*resolution*channels bytes (RGB order, row-major) into `out`. `width` and
// `height` come from the header probe and choose the decoder's downscaling. Returns "" on success,
// else why the file cannot be used ("truncated ...", "cannot be decoded ...").
std::string decode_tile(const std::uint8_t* data, std::size_t size, int width, int height, const TileOptions& options,
                        std::uint8_t* out);

// EXIF orientation (1..8) of a JPEG, 1 when absent.
int jpeg_exif_orientation(const std::uint8_t* data, std::size_t size);

}  // namespace augment
