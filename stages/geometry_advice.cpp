#include "stages/geometry_advice.h"

#include <algorithm>

#include <fmt/format.h>

namespace augment {

std::vector<std::string> geometry_advice(const std::vector<ImageRecord>& images, int resolution, int channels,
                                         bool resolution_set, bool channels_set) {
  std::vector<std::string> out;
  if (images.empty()) return out;
  if (!resolution_set) {
    std::vector<int> sides;
    for (const auto& r : images) sides.push_back(std::min(r.width, r.height));
    std::nth_element(sides.begin(), sides.begin() + static_cast<std::ptrdiff_t>(sides.size() / 2), sides.end());
    const int median = sides[sides.size() / 2];
    const auto smaller = std::count_if(images.begin(), images.end(),
                                       [&](const ImageRecord& r) { return std::min(r.width, r.height) < resolution; });
    if (median < resolution && smaller * 2 > static_cast<std::ptrdiff_t>(images.size())) {
      const double cost = static_cast<double>(resolution) * resolution / (static_cast<double>(median) * median);
      out.push_back(fmt::format(
          "{} of {} images are smaller than cache.resolution {} (median short side {} px): they are upscaled, "
          "and the model trains and samples at {} px; --resolution {} matches the images and costs about {:.1f}x "
          "less per training image",
          smaller, images.size(), resolution, median, resolution, median, cost));
    }
  }
  if (!channels_set && channels == 3) {
    const bool all_gray =
        std::all_of(images.begin(), images.end(), [](const ImageRecord& r) { return r.channels <= 2; });
    if (all_gray) {
      out.push_back(
          fmt::format("all {} images are grayscale but cache.channels is 3: the model learns three equal colour planes "
                      "and writes RGB samples; --channels 1 keeps them gray",
                      images.size()));
    }
  }
  return out;
}

}  // namespace augment
