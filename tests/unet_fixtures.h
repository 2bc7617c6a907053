// The smallest U-Net the model tests build: 8 base channels, two levels of one block each, no
// dropout; fast enough for many forward and backward passes in a unit test.
#pragma once

#include <vector>

#include "models/unet.h"

namespace augment::test {

inline UNetConfig tiny_unet(Conditioning conditioning, int channels = 3, int resolution = 16,
                            std::vector<int> attention = {8}, int classes = 3) {
  UNetConfig c;
  c.in_channels = channels;
  c.resolution = resolution;
  c.base_channels = 8;
  c.channel_mult = {1, 2};
  c.blocks = 1;
  c.attention_resolutions = std::move(attention);
  c.heads = 2;
  c.dropout = 0.0;
  c.num_classes = classes;
  c.conditioning = conditioning;
  return c;
}

}  // namespace augment::test
