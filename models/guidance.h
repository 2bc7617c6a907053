// The trained denoiser as a sampler's ModelFn for one batch of class labels, with classifier-free
// guidance for cfg models: out = out(no class) + scale * (out(class) - out(no class)).
#pragma once

#include <torch/torch.h>

#include "models/sampler.h"
#include "models/unet.h"

namespace augment {

struct ModelCall {
  torch::ScalarType precision = torch::kFloat32;  // bf16: autocast around the forward pass
  bool channels_last = false;
  double guidance = 1.0;  // cfg only; 1 = the conditional prediction alone, 0 = unconditional
  // Guidance applies only at timesteps t with guided_from <= t <= guided_to; elsewhere the
  // conditional pass runs alone (half the work). Guidance matters most at mid noise levels
  // (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval").
  double guided_from = 0.0, guided_to = 1e18;
  // From shares of the schedule (sample.guidance_interval): t/T in [from, to]; to = 1 includes T - 1.
  void set_guided_interval(double from_share, double to_share, int diffusion_steps) {
    guided_from = from_share * diffusion_steps;
    guided_to = to_share >= 1.0 ? 1e18 : to_share * diffusion_steps;
  }
  bool guides_at(int t) const { return t >= guided_from && t <= guided_to; }
};

// `labels` int64 [N] on the model's device. For cfg with guidance != 1 the conditional and the
// unconditional pass run as one batch of 2N (inside the guidance interval). Other conditioning methods use the labels
// plainly.
ModelFn denoiser_model_fn(UNet model, torch::Tensor labels, const ModelCall& call);

}  // namespace augment
