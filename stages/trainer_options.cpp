// The model and diffusion settings the train.* options describe.
#include "stages/trainer.h"

#include <fmt/format.h>

#include "pipeline/base/errors.h"

namespace augment {

UNetConfig unet_config_from(const TrainOptions& o, int channels, int resolution, int num_classes) {
  UNetConfig c;
  c.in_channels = channels;
  c.resolution = resolution;
  c.base_channels = static_cast<int>(o.channels);
  c.channel_mult = o.channel_mult;
  c.blocks = static_cast<int>(o.blocks);
  c.attention_resolutions = o.attention;
  c.heads = static_cast<int>(o.heads);
  c.dropout = o.dropout;
  c.num_classes = num_classes;
  c.conditioning = o.conditioning;
  c.cbn_norm = o.cbn_norm;
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw UserError(ExitCode::kConfig, fmt::format("train options do not make a valid denoiser for {}x{}x{} images: {}",
                                                   resolution, resolution, channels, e.what()));
  }
  return c;
}

DiffusionConfig diffusion_config_from(const TrainOptions& o) {
  DiffusionConfig d;
  d.steps = static_cast<int>(o.diffusion_steps);
  d.schedule = o.schedule;
  d.prediction = o.prediction;
  return d;
}

}  // namespace augment
