#include "models/sampler.h"

#include <cmath>
#include <stdexcept>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include "models/sampler_kinds.h"

namespace augment {

std::vector<int> sampling_timesteps(int diffusion_steps, int steps) {
  if (diffusion_steps < 1) throw std::invalid_argument("sampling_timesteps: diffusion_steps must be >= 1");
  if (steps < 1) throw std::invalid_argument(fmt::format("sampling steps must be at least 1, not {}", steps));
  steps = std::min(steps, diffusion_steps);
  std::vector<int> ts;
  ts.reserve(static_cast<std::size_t>(steps));
  const double stride = static_cast<double>(diffusion_steps) / steps;
  for (int i = 0; i < steps; ++i) {
    // T - 1 - round(i * stride): starts at T - 1, strictly descending, last interval ends at -1.
    const int t = diffusion_steps - 1 - static_cast<int>(std::lround(i * stride));
    ts.push_back(t);
  }
  return ts;
}

NoiseSource::NoiseSource(const std::vector<std::uint64_t>& seeds, int channels, int resolution,
                         const torch::Device& device)
    : channels_(channels), resolution_(resolution), device_(device) {
  generators_.reserve(seeds.size());
  for (auto s : seeds) generators_.push_back(at::make_generator<at::CPUGeneratorImpl>(s));
}

torch::Tensor NoiseSource::next() {
  // Drawn on the CPU per image: the draw of one image never depends on the others or the device.
  // For a GPU into page-locked memory, so the copy runs while the host goes on (no round trip).
  auto out = torch::empty({size(), channels_, resolution_, resolution_},
                          torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(device_.is_cuda()));
  for (std::int64_t i = 0; i < size(); ++i) {
    out[i].copy_(
        torch::randn({channels_, resolution_, resolution_}, generators_[static_cast<std::size_t>(i)], torch::kFloat32));
  }
  return device_.is_cuda() ? out.to(device_, /*non_blocking=*/true) : out;
}

Denoised predict(const GaussianDiffusion& diffusion, const torch::Tensor& model_out, const torch::Tensor& x_t, int t,
                 bool clip) {
  auto d = diffusion.denoise(model_out, x_t, t);
  if (!clip) return d;
  // Static thresholding: a clean image outside [-1, 1] is impossible; eps follows the clamped x0
  // so the update stays on the line between x_t and x0.
  const double ab = diffusion.alpha_bar(t);
  d.x0 = d.x0.clamp(-1.0, 1.0);
  d.eps = (x_t.to(torch::kFloat32) - std::sqrt(ab) * d.x0) / std::sqrt(1.0 - ab);
  return d;
}

std::unique_ptr<Sampler> make_sampler(const SamplerSettings& s) {
  if (s.steps < 1) throw std::invalid_argument(fmt::format("sample.steps must be at least 1, not {}", s.steps));
  if (s.eta < 0.0 || s.eta > 1.0)
    throw std::invalid_argument(fmt::format("sample.eta must be in [0, 1], not {}", s.eta));
  switch (s.kind) {
    case SamplerKind::kDdpm: return make_ddpm_sampler(s);
    case SamplerKind::kDdim: return make_ddim_sampler(s);
    case SamplerKind::kDpmpp2m: return make_dpmpp2m_sampler(s);
  }
  throw std::invalid_argument("unknown sampler");
}

}  // namespace augment
