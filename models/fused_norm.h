// silu(group_norm(x)): fused into one CUDA kernel where it can be (inference), augment's CPU kernel
// on the CPU (models/group_norm_silu_cpu.h, training too), LibTorch's two ops elsewhere.
#pragma once

#include <torch/torch.h>

namespace augment {

// False where AUGMENT_FUSED_KERNELS is 0: the switch for comparing augment's norm kernels (CUDA and
// CPU) against LibTorch's unfused ops.
bool fused_kernels_switched_on();

// True when this build has the CUDA kernels (LibTorch with CUDA and nvcc at configure time) and
// they are switched on.
bool fused_kernels_enabled();

// Whether group_norm_silu takes the fused kernel for x: a 4-d CUDA tensor in fp32, bf16 or fp16,
// NCHW or channels-last contiguous, with gradients off (inference; training keeps LibTorch's ops
// and their backward).
bool fuses_group_norm_silu(const torch::Tensor& x);

// silu(group_norm(x, groups, weight, bias, eps 1e-5)); weight and bias [C] or undefined. Where
// neither kernel applies: LibTorch's group_norm (affine parameters cast to x's type, as the CPU
// needs under autocast) followed by silu, exactly as before the kernel existed.
torch::Tensor group_norm_silu(const torch::Tensor& x, int groups, const torch::Tensor& weight,
                              const torch::Tensor& bias);

// The unfused ops alone (the reference the kernel is tested against).
torch::Tensor group_norm_in_input_type(const torch::Tensor& x, int groups, torch::Tensor weight, torch::Tensor bias);

}  // namespace augment
