// sample: generate the synthetic images of the balance plan with the trained denoiser, one shard
// of them per invocation (--shard K/N or a SLURM array task), resumable per image.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/config.h"
#include "pipeline/stage.h"

namespace augment {

// How the model is sampled (the plan and the store options are SampleOptions, same group).
struct SamplerOptions {
  static constexpr const char* kGroup = "sample";
  // The recipe's sampler (docs/recipe.md): DPM-Solver++ 2M, 10 steps, guidance 2 for t/T in [0.35, 1].
  std::string sampler = "dpmpp2m";  // ddpm | ddim | dpmpp2m
  std::int64_t steps = 10;          // denoiser evaluations per image (ddpm: all diffusion steps)
  double eta = 0.0;                 // ddim only
  double guidance = 2.0;            // cfg models: scale of classifier-free guidance (1 = conditional only)
  std::vector<std::string> guidance_interval = {"0.35", "1"};  // share of the noise schedule t/T where guidance applies
  bool clip = true;                 // clamp the predicted clean image to [-1, 1]
  static void bind(OptionBinder<SamplerOptions>& b);
};

// sample.guidance_interval as (from, to) shares of the noise schedule; throws UserError(kConfig).
std::pair<double, double> guidance_interval_of(const SamplerOptions& options);
// Denoiser passes (in images) the sampler spends on one image: one per step, plus the
// unconditional half of the guided steps of a cfg model.
double denoiser_passes_per_image(const SamplerOptions& options, int diffusion_steps, bool guided);

std::unique_ptr<Stage> make_sample_stage();

}  // namespace augment
