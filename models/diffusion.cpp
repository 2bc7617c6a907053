#include "models/diffusion.h"

#include <cmath>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <vector>

#include <fmt/format.h>

namespace augment {

void DiffusionConfig::validate() const {
  if (steps < 2) throw std::invalid_argument(fmt::format("diffusion steps must be at least 2, not {}", steps));
}

GaussianDiffusion::GaussianDiffusion(const DiffusionConfig& config)
    : config_(config), device_tables_(std::make_shared<DeviceTables>()) {
  config_.validate();
  const int T = config_.steps;
  const auto f64 = torch::dtype(torch::kFloat64);
  if (config_.schedule == NoiseSchedule::kLinear) {
    // DDPM's 1e-4 .. 0.02 for T = 1000, scaled so other T keep the same total noise.
    const double scale = 1000.0 / T;
    betas_ = torch::linspace(scale * 1e-4, scale * 0.02, T, f64);
  } else {
    // Nichol & Dhariwal: alpha_bar follows cos^2, betas capped at 0.999 to avoid a singular end.
    const double s = 0.008;
    auto f = [&](double u) { return std::pow(std::cos((u + s) / (1 + s) * M_PI / 2), 2); };
    betas_ = torch::empty({T}, f64);
    auto b = betas_.accessor<double, 1>();
    for (int i = 0; i < T; ++i)
      b[i] = std::min(1.0 - f(static_cast<double>(i + 1) / T) / f(static_cast<double>(i) / T), 0.999);
  }
  alphas_cumprod_ = torch::cumprod(1.0 - betas_, 0);
  alphas_cumprod_prev_ = torch::cat({torch::ones({1}, f64), alphas_cumprod_.slice(0, 0, T - 1)});
  sqrt_ab_ = alphas_cumprod_.sqrt();
  sqrt_one_minus_ab_ = (1.0 - alphas_cumprod_).sqrt();
  post_c0_ = betas_ * alphas_cumprod_prev_.sqrt() / (1.0 - alphas_cumprod_);
  post_ct_ = (1.0 - betas_).sqrt() * (1.0 - alphas_cumprod_prev_) / (1.0 - alphas_cumprod_);
  post_var_ = betas_ * (1.0 - alphas_cumprod_prev_) / (1.0 - alphas_cumprod_);
  snr_ = alphas_cumprod_ / (1.0 - alphas_cumprod_);
}

double GaussianDiffusion::alpha_bar(int t) const {
  if (t < -1 || t >= config_.steps)
    throw std::out_of_range(fmt::format("timestep {} outside [-1, {}]", t, config_.steps - 1));
  return t < 0 ? 1.0 : alphas_cumprod_[t].item<double>();
}

struct GaussianDiffusion::DeviceTables {
  std::mutex mutex;
  // (table's host data, device) -> the table in float32 on that device
  std::vector<std::tuple<const void*, torch::Device, torch::Tensor>> copies;
};

torch::Tensor GaussianDiffusion::on_device(const torch::Tensor& table, const torch::Device& device) const {
  std::lock_guard<std::mutex> lock(device_tables_->mutex);
  for (const auto& [key, dev, copy] : device_tables_->copies) {
    if (key == table.data_ptr() && dev == device) return copy;
  }
  auto copy = table.to(torch::kFloat32).to(device);
  device_tables_->copies.emplace_back(table.data_ptr(), device, copy);
  return copy;
}

torch::Tensor GaussianDiffusion::gather(const torch::Tensor& table, const torch::Tensor& t,
                                        const torch::Tensor& like) const {
  // Timesteps on a GPU are looked up there, in the table's float32 copy: reading them back to the
  // host would stall every training step on the device.
  if (!t.device().is_cpu())
    return on_device(table, t.device()).index_select(0, t.to(torch::kInt64)).view({-1, 1, 1, 1});
  auto v = table.index_select(0, t.to(torch::kInt64)).to(torch::kFloat32);
  return v.to(like.device()).view({-1, 1, 1, 1});
}

torch::Tensor GaussianDiffusion::snr(const torch::Tensor& t) const { return gather(snr_, t, t).view({-1}); }

torch::Tensor GaussianDiffusion::q_sample(const torch::Tensor& x0, const torch::Tensor& t,
                                          const torch::Tensor& noise) const {
  return gather(sqrt_ab_, t, x0) * x0 + gather(sqrt_one_minus_ab_, t, x0) * noise;
}

torch::Tensor GaussianDiffusion::target(const torch::Tensor& x0, const torch::Tensor& t,
                                        const torch::Tensor& noise) const {
  if (!v_prediction()) return noise;
  return gather(sqrt_ab_, t, x0) * noise - gather(sqrt_one_minus_ab_, t, x0) * x0;
}

namespace {
// a = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar), broadcastable to x_t.
Denoised denoise_with(const torch::Tensor& out, const torch::Tensor& x_t, const torch::Tensor& a,
                      const torch::Tensor& sigma, bool v) {
  auto o = out.to(torch::kFloat32);
  auto x = x_t.to(torch::kFloat32);
  if (v) return {a * x - sigma * o, sigma * x + a * o};
  return {(x - sigma * o) / a, o};
}
}  // namespace

Denoised GaussianDiffusion::denoise(const torch::Tensor& model_out, const torch::Tensor& x_t,
                                    const torch::Tensor& t) const {
  return denoise_with(model_out, x_t, gather(sqrt_ab_, t, x_t), gather(sqrt_one_minus_ab_, t, x_t), v_prediction());
}

Denoised GaussianDiffusion::denoise(const torch::Tensor& model_out, const torch::Tensor& x_t, int t) const {
  const double ab = alpha_bar(t);
  const auto opts = torch::dtype(torch::kFloat32).device(x_t.device());
  return denoise_with(model_out, x_t, torch::full({1, 1, 1, 1}, std::sqrt(ab), opts),
                      torch::full({1, 1, 1, 1}, std::sqrt(1.0 - ab), opts), v_prediction());
}

Posterior GaussianDiffusion::posterior(const torch::Tensor& x0, const torch::Tensor& x_t, int t, int s) const {
  if (s >= t) throw std::invalid_argument(fmt::format("posterior needs s < t, got s = {}, t = {}", s, t));
  const double ab_t = alpha_bar(t), ab_s = alpha_bar(s);
  const double alpha_ts = ab_t / ab_s, beta_ts = 1.0 - alpha_ts;
  const double c0 = std::sqrt(ab_s) * beta_ts / (1.0 - ab_t);
  const double ct = std::sqrt(alpha_ts) * (1.0 - ab_s) / (1.0 - ab_t);
  const double var = beta_ts * (1.0 - ab_s) / (1.0 - ab_t);
  return {c0 * x0.to(torch::kFloat32) + ct * x_t.to(torch::kFloat32),
          torch::full({1, 1, 1, 1}, var, torch::dtype(torch::kFloat32).device(x_t.device()))};
}

Posterior GaussianDiffusion::posterior(const torch::Tensor& x0, const torch::Tensor& x_t,
                                       const torch::Tensor& t) const {
  return {gather(post_c0_, t, x_t) * x0.to(torch::kFloat32) + gather(post_ct_, t, x_t) * x_t.to(torch::kFloat32),
          gather(post_var_, t, x_t)};
}

torch::Tensor GaussianDiffusion::loss_per_example(const torch::Tensor& model_out, const torch::Tensor& x0,
                                                  const torch::Tensor& t, const torch::Tensor& noise,
                                                  double min_snr_gamma) const {
  auto err = (model_out.to(torch::kFloat32) - target(x0, t, noise)).pow(2).flatten(1).mean(1);  // [N]
  if (min_snr_gamma <= 0) return err;
  // Hang et al. 2023: cap the weight of low-noise steps. In eps units the weight is
  // min(snr, g) / snr; a v target already carries a factor snr + 1.
  auto s = snr(t).to(err.device());
  auto w = torch::clamp_max(s, min_snr_gamma) / (v_prediction() ? s + 1.0 : s);
  return err * w;
}

}  // namespace augment
