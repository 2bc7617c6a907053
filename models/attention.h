// The core of multi-head self-attention, softmax(q k^T / sqrt(d)) v, on the packed projection of
// a U-Net attention block, in the fastest form each LibTorch and device allows.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace augment {

enum class AttentionKernel {
  kAuto,    // the fastest below for the tensor, the LibTorch version and the device
  kMatmul,  // LibTorch matmul + softmax on [N, heads, T, d] views (autograd through each op)
  kSliced,  // CPU, fp32: one (batch, head) slice per task over all cores, no layout copies
  kFused,   // LibTorch 2.x: at::scaled_dot_product_attention (flash attention on CPU and CUDA)
};

// qkv [N, T, 3C] (q, k and v side by side, each C = heads * d wide) -> [N, T, C], the heads side
// by side again: the layout of a Linear on channels-last tokens, so nothing is transposed on
// either side. Differentiable. kFused falls back to kMatmul on LibTorch 1.x, kSliced where the
// tensor is not a CPU fp32 one.
at::Tensor multi_head_attention(const at::Tensor& qkv, int64_t heads, AttentionKernel kernel = AttentionKernel::kAuto);

// AUGMENT_ATTENTION=matmul|sliced|fused picks the kernel kAuto resolves to (for comparing them);
// unset or auto: augment's choice.
AttentionKernel attention_kernel_from_env();

}  // namespace augment
