// Samplers: turn noise into images with a trained denoiser. Each sampler is a small named unit
// behind one interface (DDPM ancestral, DDIM with eta, DPM-Solver++ 2M); they share the timestep
// spacing, the per-image noise and the diffusion maths of models/diffusion.h.
//
// Reproducibility: every random draw of image i comes from a generator seeded with image i's own
// seed (NoiseSource), so an image does not depend on which other images share its batch.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/diffusion.h"
#include "models/sampler_kind.h"

namespace augment {

struct SamplerSettings {
  SamplerKind kind = SamplerKind::kDdim;
  int steps = 50;    // denoiser evaluations (ddpm always uses all T)
  double eta = 0.0;  // ddim: 0 deterministic, 1 = DDPM-like noise
  bool clip = true;  // clamp the predicted clean image to [-1, 1] at every step
};

// The timesteps a sampler visits, descending from T - 1: `steps` of them evenly spaced with the
// last interval ending at the clean image ("trailing" spacing, so the first step starts from pure
// noise at T - 1 whatever the step count). steps >= T gives every timestep.
std::vector<int> sampling_timesteps(int diffusion_steps, int steps);

// The model as a sampler sees it: noisy batch x_t (fp32) at timestep t -> the denoiser's output
// (eps or v, guidance already applied).
using ModelFn = std::function<torch::Tensor(const torch::Tensor& x_t, int t)>;

// One generator per image; each call to next() draws one [C, H, W] standard normal per image.
class NoiseSource {
 public:
  NoiseSource(const std::vector<std::uint64_t>& seeds, int channels, int resolution, const torch::Device& device);
  torch::Tensor next();  // [N, C, H, W] fp32 on the device
  std::int64_t size() const { return static_cast<std::int64_t>(generators_.size()); }

 private:
  std::vector<at::Generator> generators_;
  int channels_, resolution_;
  torch::Device device_;
};

class Sampler {
 public:
  virtual ~Sampler() = default;
  // Draws x_T from `noise`, runs the reverse process, returns the clean images in [-1, 1] (fp32).
  // `on_step` (optional) is called after every denoiser evaluation.
  virtual torch::Tensor run(const GaussianDiffusion& diffusion, const ModelFn& model, NoiseSource& noise,
                            const std::function<void()>& on_step = {}) const = 0;
  // Denoiser evaluations per image (for progress and timing).
  virtual int evaluations(const GaussianDiffusion& diffusion) const = 0;
};

// Throws std::invalid_argument for an unknown name or bad settings.
std::unique_ptr<Sampler> make_sampler(const SamplerSettings& settings);

// (x0, eps) from the model output, with x0 clamped when `clip` and eps made consistent with it.
Denoised predict(const GaussianDiffusion& diffusion, const torch::Tensor& model_out, const torch::Tensor& x_t, int t,
                 bool clip);

}  // namespace augment
