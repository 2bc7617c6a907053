// Advice on cache.resolution and cache.channels from what scan found: a folder of small or
// grayscale images cached at the 64 px RGB default trains slower than it needs to and gets
// synthetic images that do not look like its real ones.
#pragma once

#include <string>
#include <vector>

#include "manifests/image_record.h"

namespace augment {

// Warnings (empty when the options suit the images), each naming the option and the fix.
// `resolution_set` / `channels_set`: the user chose the value, so it is not questioned.
std::vector<std::string> geometry_advice(const std::vector<ImageRecord>& images, int resolution, int channels,
                                         bool resolution_set, bool channels_set);

}  // namespace augment
