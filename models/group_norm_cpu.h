// GroupNorm on channels-last fp32 feature maps on the CPU, forward and backward.
//
// LibTorch 1.13 has a channels-last CPU group norm forward but not backward: its backward copies
// the input and the incoming gradient to NCHW and hands an NCHW gradient to the convolution
// before it, which copies it back (0.7 s of a 10 s ref32 training step, and the reason
// channels-last lost to NCHW in fp32; docs/measurements.md, 2026-12-03).
#pragma once

#include <ATen/core/Tensor.h>

namespace augment {

// Whether group_norm_channels_last takes augment's kernel for x: a 4-d CPU fp32 tensor, stored
// channels-last (C > 1), outside autocast.
bool group_norm_cpu_applies(const at::Tensor& x);

// group_norm(x, groups, weight, bias, eps 1e-5), differentiable; weight and bias [C] or undefined.
// Where group_norm_cpu_applies is false: LibTorch's group_norm.
at::Tensor group_norm_channels_last(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                                    const at::Tensor& bias);

}  // namespace augment
