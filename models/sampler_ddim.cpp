// DDIM (Song et al. 2021) over a respaced subset of timesteps. eta = 0 is deterministic; eta = 1
// adds the posterior's noise (DDPM's variance when every timestep is visited).
#include <algorithm>
#include <cmath>

#include "models/sampler_kinds.h"

namespace augment {
namespace {

class DdimSampler : public Sampler {
 public:
  explicit DdimSampler(const SamplerSettings& s) : s_(s) {}

  torch::Tensor run(const GaussianDiffusion& diffusion, const ModelFn& model, NoiseSource& noise,
                    const std::function<void()>& on_step) const override {
    torch::NoGradGuard no_grad;
    const auto ts = sampling_timesteps(diffusion.steps(), s_.steps);
    auto x = noise.next();
    for (std::size_t i = 0; i < ts.size(); ++i) {
      const int t = ts[i];
      const int s = i + 1 < ts.size() ? ts[i + 1] : -1;
      const auto d = predict(diffusion, model(x, t), x, t, s_.clip);
      const double ab_t = diffusion.alpha_bar(t), ab_s = diffusion.alpha_bar(s);
      const double sigma = s_.eta * std::sqrt((1.0 - ab_s) / (1.0 - ab_t) * (1.0 - ab_t / ab_s));
      const double dir = std::sqrt(std::max(0.0, 1.0 - ab_s - sigma * sigma));
      x = std::sqrt(ab_s) * d.x0 + dir * d.eps;
      if (sigma > 0) x = x + sigma * noise.next();
      if (on_step) on_step();
    }
    return x.clamp(-1.0, 1.0);
  }

  int evaluations(const GaussianDiffusion& diffusion) const override {
    return static_cast<int>(sampling_timesteps(diffusion.steps(), s_.steps).size());
  }

 private:
  SamplerSettings s_;
};

}  // namespace

std::unique_ptr<Sampler> make_ddim_sampler(const SamplerSettings& settings) {
  return std::make_unique<DdimSampler>(settings);
}

}  // namespace augment
