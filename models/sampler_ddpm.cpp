// DDPM ancestral sampling (Ho et al. 2020): every one of the T steps, x_{t-1} drawn from the
// posterior q(x_{t-1} | x_t, x0) with x0 predicted by the model.
#include <cmath>

#include "models/sampler_kinds.h"

namespace augment {
namespace {

class DdpmSampler : public Sampler {
 public:
  explicit DdpmSampler(const SamplerSettings& s) : clip_(s.clip) {}

  torch::Tensor run(const GaussianDiffusion& diffusion, const ModelFn& model, NoiseSource& noise,
                    const std::function<void()>& on_step) const override {
    torch::NoGradGuard no_grad;
    auto x = noise.next();
    for (int t = diffusion.steps() - 1; t >= 0; --t) {
      const auto d = predict(diffusion, model(x, t), x, t, clip_);
      const auto post = diffusion.posterior(d.x0, x, t, t - 1);
      x = t > 0 ? post.mean + post.variance.sqrt() * noise.next() : post.mean;
      if (on_step) on_step();
    }
    return x.clamp(-1.0, 1.0);
  }

  int evaluations(const GaussianDiffusion& diffusion) const override { return diffusion.steps(); }

 private:
  bool clip_;
};

}  // namespace

std::unique_ptr<Sampler> make_ddpm_sampler(const SamplerSettings& settings) {
  return std::make_unique<DdpmSampler>(settings);
}

}  // namespace augment
