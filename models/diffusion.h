// Gaussian diffusion: the noise schedule, the forward process q(x_t | x_0), the posterior
// q(x_s | x_t, x_0) and the conversions between what the denoiser predicts (eps or v) and the
// clean image. Implemented once; the training loss and every sampler (DDPM, DDIM, DPM-Solver++)
// are small functions on top of it.
//
// Timesteps are 0-based: t = 0 is the first noising step, t = T - 1 the last. alpha_bar(-1) = 1
// stands for the clean image, so the last sampling step goes from t = 0 to s = -1.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include <torch/torch.h>

#include "models/noise_schedule.h"

namespace augment {

struct DiffusionConfig {
  int steps = 1000;  // T
  NoiseSchedule schedule = NoiseSchedule::kLinear;
  Prediction prediction = Prediction::kEps;  // what the denoiser outputs
  // Throws std::invalid_argument naming the bad field.
  void validate() const;
};

// The two predictions every sampler needs, in fp32.
struct Denoised {
  torch::Tensor x0;   // predicted clean image
  torch::Tensor eps;  // predicted noise
};

struct Posterior {
  torch::Tensor mean;      // [N, C, H, W]
  torch::Tensor variance;  // broadcastable to mean ([N, 1, 1, 1])
};

class GaussianDiffusion {
 public:
  explicit GaussianDiffusion(const DiffusionConfig& config);

  const DiffusionConfig& config() const { return config_; }
  int steps() const { return config_.steps; }
  bool v_prediction() const { return config_.prediction == Prediction::kV; }

  // Schedule tables, float64 on the CPU, length T.
  const torch::Tensor& betas() const { return betas_; }
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  // alpha_bar(t) for t in [-1, T-1]; alpha_bar(-1) = 1.
  double alpha_bar(int t) const;
  // Signal-to-noise ratio alpha_bar / (1 - alpha_bar) per timestep: t int64 [N] -> float32 [N].
  torch::Tensor snr(const torch::Tensor& t) const;

  // q(x_t | x_0): sqrt(ab_t) x0 + sqrt(1 - ab_t) noise; t int64 [N].
  torch::Tensor q_sample(const torch::Tensor& x0, const torch::Tensor& t, const torch::Tensor& noise) const;
  // What the denoiser is trained to output at t: eps, or v = sqrt(ab) eps - sqrt(1 - ab) x0.
  torch::Tensor target(const torch::Tensor& x0, const torch::Tensor& t, const torch::Tensor& noise) const;
  // Converts the denoiser output at (x_t, t) into (x0, eps); computed in fp32.
  Denoised denoise(const torch::Tensor& model_out, const torch::Tensor& x_t, const torch::Tensor& t) const;
  // Same for a whole batch at one timestep (the sampler case).
  Denoised denoise(const torch::Tensor& model_out, const torch::Tensor& x_t, int t) const;

  // q(x_s | x_t, x_0) for s < t (s = t - 1 is DDPM's posterior; any s serves respaced sampling).
  Posterior posterior(const torch::Tensor& x0, const torch::Tensor& x_t, int t, int s) const;
  // Per-timestep posterior for s = t - 1 with t int64 [N] (training-time diagnostics and tests).
  Posterior posterior(const torch::Tensor& x0, const torch::Tensor& x_t, const torch::Tensor& t) const;

  // The simple objective: per-example mean squared error between output and target, optionally
  // weighted by min-SNR-gamma (gamma <= 0: off). Returns float32 [N].
  torch::Tensor loss_per_example(const torch::Tensor& model_out, const torch::Tensor& x0, const torch::Tensor& t,
                                 const torch::Tensor& noise, double min_snr_gamma = 0.0) const;

 private:
  // Gathers a float64 table at t int64 [N] -> float32 [N, 1, 1, 1] on `like`'s device.
  torch::Tensor gather(const torch::Tensor& table, const torch::Tensor& t, const torch::Tensor& like) const;
  // The table in float32 on a device, copied there once.
  torch::Tensor on_device(const torch::Tensor& table, const torch::Device& device) const;
  struct DeviceTables;

  DiffusionConfig config_;
  // float64; coefficients are formed in double so that 1 - alpha_bar near t = 0 keeps its digits.
  torch::Tensor betas_, alphas_cumprod_, alphas_cumprod_prev_;
  torch::Tensor sqrt_ab_, sqrt_one_minus_ab_, post_c0_, post_ct_, post_var_, snr_;
  std::shared_ptr<DeviceTables> device_tables_;  // shared by copies, as the tables are
};

}  // namespace augment
