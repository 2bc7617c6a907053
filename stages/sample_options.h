// The `sample.*` options: what the plan generates and how the store batches and shards it, and
// how the model is sampled (sampler, steps, guidance).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/sampler_kind.h"
#include "pipeline/base/config.h"

namespace augment {

struct SampleOptions {
  static constexpr const char* kGroup = "sample";
  // the plan and the store
  std::string policy = "balance=max";  // balance=max | per_class=N | ratio=r | synthetic=N
  std::int64_t batch_size = 64;        // images per call of the generator
  std::string shard;                   // K/N (0-based K); empty: SLURM array variables, else 0/1
  double min_confidence = 0.0;         // classifier filter: keep a sample only at this confidence (0: off)
  std::int64_t max_tries = 4;          // tries per planned image when filtering
  // the model: the recipe's sampler (docs/recipe.md), DPM-Solver++ 2M, 10 steps, guidance 2 for
  // t/T in [0.35, 1]
  SamplerKind sampler = SamplerKind::kDpmpp2m;
  std::int64_t steps = 10;  // denoiser evaluations per image (ddpm: all diffusion steps)
  double eta = 0.0;         // ddim only
  double guidance = 2.0;    // cfg models: classifier-free guidance scale (1 = conditional only)
  std::vector<double> guidance_interval = {0.35, 1};  // share of the noise schedule t/T where guidance applies
  bool clip = true;                                   // clamp the predicted clean image to [-1, 1]
  static void bind(OptionBinder<SampleOptions>& b);
};

// sample.guidance_interval as (from, to) shares of the noise schedule; throws UserError(kConfig).
std::pair<double, double> guidance_interval_of(const SampleOptions& options);
// Denoiser passes (in images) the sampler spends on one image: one per step, plus the
// unconditional half of the guided steps of a cfg model.
double denoiser_passes_per_image(const SampleOptions& options, int diffusion_steps, bool guided);

}  // namespace augment
