// Scoped mixed precision: inside the scope, matrix-heavy ops (convolutions, linear, matmul) run
// in `precision` while the weights stay fp32 masters. fp32 makes the scope a no-op; a scope
// with fp32 inside a bf16 one turns autocast off (for code that must run in full precision).
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "models/torch_compat.h"

namespace augment {

class AutocastScope {
 public:
  AutocastScope(const torch::Device& device, torch::ScalarType precision)
      : cuda_(device.is_cuda()), enable_(precision != torch::kFloat32) {
    previous_ = compat::autocast_enabled(cuda_);
    previous_dtype_ = compat::autocast_dtype(cuda_);
    set(enable_, enable_ ? precision : previous_dtype_);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    // The cast weights are cached per outermost scope; they go stale once the optimizer steps.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    set(previous_, previous_dtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  void set(bool enabled, torch::ScalarType dtype) const {
    compat::set_autocast_enabled(cuda_, enabled);
    compat::set_autocast_dtype(cuda_, dtype);
  }

  bool cuda_, enable_, previous_ = false;
  torch::ScalarType previous_dtype_ = torch::kBFloat16;
};

}  // namespace augment
