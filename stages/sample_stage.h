// sample: generate the synthetic images of the balance plan with the trained denoiser, one shard
// of them per invocation (--shard K/N or a SLURM array task), resumable per image.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "pipeline/config.h"
#include "pipeline/stage.h"

namespace augment {

// How the model is sampled (the plan and the store options are SampleOptions, same group).
struct SamplerOptions {
  static constexpr const char* kGroup = "sample";
  std::string sampler = "ddim";  // ddpm | ddim | dpmpp2m
  std::int64_t steps = 50;          // denoiser evaluations per image (ddpm: all diffusion steps)
  double eta = 0.0;                 // ddim only
  double guidance = 2.0;            // cfg models: scale of classifier-free guidance (1 = conditional only)
  std::vector<std::string> guidance_interval = {"0", "1"};  // share of the noise schedule t/T where guidance applies
  bool clip = true;                 // clamp the predicted clean image to [-1, 1]
  static void bind(OptionBinder<SamplerOptions>& b);
};

std::unique_ptr<Stage> make_sample_stage();

}  // namespace augment
