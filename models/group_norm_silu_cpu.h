// silu(group_norm(x)) on the CPU, forward and backward, in fp32 or bf16, NCHW or channels-last.
//
// LibTorch 1.13's CPU group norm in bf16 runs at a tenth of its fp32 speed: in the recipe's
// denoiser forward pass (bf16, batch 128) it took 47% of the time against 33% for all the
// convolutions (docs/measurements.md, 2026-12-07), so bf16 sampling was slower than fp32; and
// its channels-last backward copies to NCHW and back. This kernel reads bf16, computes in fp32,
// and fuses the SiLU that follows every norm but one; the backward recomputes the normalised
// input instead of saving the SiLU's.
#pragma once

#include <ATen/core/Tensor.h>

namespace augment {

// Whether group_norm_silu_cpu takes augment's kernel: a 4-d CPU tensor in fp32 or bf16 with more
// than one channel, stored NCHW or channels-last contiguous, and fp32 or bf16 affine parameters of
// its channel count (or none).
bool group_norm_silu_cpu_applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

// group_norm(x, groups, weight, bias, eps 1e-5), followed by silu where `silu`, in x's dtype and
// memory format; differentiable in x, weight and bias (their gradients in their own types).
// Statistics per sample and group in two passes (mean, then the squared deviations), accumulated
// in double. Where group_norm_silu_cpu_applies is false: LibTorch's ops.
at::Tensor group_norm_silu_cpu(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                               bool silu);

}  // namespace augment
