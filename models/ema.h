// Exponential moving average of a model's weights: what sampling and evaluation use, because
// the raw weights of a short diffusion run jitter from step to step.
#pragma once

#include <algorithm>
#include <cstdint>

#include <torch/torch.h>

namespace augment {

// The decay for update number `step` (0-based): `warmup` > 0 ramps it as (1 + n) / (warmup + n)
// so the average is not anchored to the random initial weights; `warmup` <= 0 uses `decay`.
inline double ema_decay_at(double decay, std::int64_t warmup, std::int64_t step) {
  if (warmup <= 0) return decay;
  return std::min(decay, (1.0 + static_cast<double>(step)) / (static_cast<double>(warmup) + static_cast<double>(step)));
}

// ema <- decay * ema + (1 - decay) * model for parameters; buffers (batch-norm running
// statistics) are copied, since they are already averages.
inline void ema_update(torch::nn::Module& ema, const torch::nn::Module& model, double decay) {
  torch::NoGradGuard no_grad;
  auto target = ema.parameters();
  const auto source = model.parameters();
  at::_foreach_mul_(target, decay);
  at::_foreach_add_(target, source, 1.0 - decay);
  auto target_buffers = ema.buffers();
  const auto source_buffers = model.buffers();
  for (std::size_t i = 0; i < target_buffers.size(); ++i) target_buffers[i].copy_(source_buffers[i]);
}

// Makes `ema` an exact copy of `model` (values and memory layout), without gradients.
inline void ema_reset(torch::nn::Module& ema, const torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  auto target = ema.parameters();
  const auto source = model.parameters();
  for (std::size_t i = 0; i < target.size(); ++i) {
    target[i].set_data(source[i].clone());
    target[i].set_requires_grad(false);
  }
  auto target_buffers = ema.buffers();
  const auto source_buffers = model.buffers();
  for (std::size_t i = 0; i < target_buffers.size(); ++i) target_buffers[i].copy_(source_buffers[i]);
}

}  // namespace augment
