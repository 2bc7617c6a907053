// silu(group_norm(x)) for inference on the CPU, in fp32 or bf16, NCHW or channels-last.
//
// LibTorch 1.13's CPU group norm in bf16 runs at a tenth of its fp32 speed: in the recipe's
// denoiser forward pass (bf16, batch 128) it took 47% of the time against 33% for all the
// convolutions (docs/measurements.md, 2026-12-07), so bf16 sampling was slower than fp32. This
// kernel reads bf16 and computes in fp32, and fuses the SiLU that follows every norm but one.
#pragma once

#include <ATen/core/Tensor.h>

namespace augment {

// Whether group_norm_silu_cpu takes augment's kernel: a 4-d CPU tensor in fp32 or bf16 with more
// than one channel, stored NCHW or channels-last contiguous, affine parameters of its channel
// count (or undefined), and nothing that records a gradient.
bool group_norm_silu_cpu_applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

// group_norm(x, groups, weight, bias, eps 1e-5), followed by silu where `silu`, in x's dtype and
// memory format. Statistics per sample and group in two passes over the group (mean, then the
// squared deviations), accumulated in fp32 lanes and summed in double.
at::Tensor group_norm_silu_cpu(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                               bool silu);

}  // namespace augment
