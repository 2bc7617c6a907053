// DPM-Solver++ (2M) (Lu et al. 2022): a second-order multistep solver of the diffusion ODE in
// the data-prediction form, which keeps quality at 10-25 steps. Log-SNR lambda = log(alpha/sigma);
// each step reuses the previous step's x0 prediction for the second-order correction. The last
// step (to the clean image, where lambda is infinite) is first order: x = x0.
#include <algorithm>
#include <cmath>

#include "models/sampler_kinds.h"

namespace augment {
namespace {

class DpmSolverPP2M : public Sampler {
 public:
  explicit DpmSolverPP2M(const SamplerSettings& s) : s_(s) {}

  torch::Tensor run(const GaussianDiffusion& diffusion, const ModelFn& model, NoiseSource& noise,
                    const std::function<void()>& on_step) const override {
    torch::NoGradGuard no_grad;
    const auto ts = sampling_timesteps(diffusion.steps(), s_.steps);
    auto x = noise.next();
    torch::Tensor prev_x0;
    double prev_h = 0.0;
    for (std::size_t i = 0; i < ts.size(); ++i) {
      const int t = ts[i];
      const int s = i + 1 < ts.size() ? ts[i + 1] : -1;
      const auto d = predict(diffusion, model(x, t), x, t, s_.clip);
      if (s < 0) {
        x = d.x0;
      } else {
        const double ab_t = diffusion.alpha_bar(t), ab_s = diffusion.alpha_bar(s);
        const double alpha_s = std::sqrt(ab_s), sigma_s = std::sqrt(1.0 - ab_s), sigma_t = std::sqrt(1.0 - ab_t);
        const double h = 0.5 * (std::log(ab_s / (1.0 - ab_s)) - std::log(ab_t / (1.0 - ab_t)));
        torch::Tensor D = d.x0;
        if (prev_x0.defined()) {
          const double r = prev_h / h;
          D = (1.0 + 0.5 / r) * d.x0 - (0.5 / r) * prev_x0;
        }
        x = (sigma_s / sigma_t) * x - alpha_s * std::expm1(-h) * D;
        prev_h = h;
      }
      prev_x0 = d.x0;
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

std::unique_ptr<Sampler> make_dpmpp2m_sampler(const SamplerSettings& settings) {
  return std::make_unique<DpmSolverPP2M>(settings);
}

}  // namespace augment
