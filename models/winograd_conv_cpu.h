// 3×3 stride-1 convolutions on the CPU in fp32 through Winograd's F(4×4, 3×3).
//
// In fp32 the denoiser's 3×3 convolutions are most of a sampling step and of a training step:
// oneDNN's direct kernels already run them near the machine's fp32 peak (docs/measurements.md,
// 2026-12-03), so the way past that peak is to do less arithmetic. F(4×4, 3×3) (Lavin & Gray,
// 2016) computes each 4×4 output tile from a 6×6 input tile with 36 multiplications per channel
// pair instead of 144: the input and output tiles are transformed, and the products become 36
// matrix products (tiles × in-channels by in-channels × out-channels), run by oneDNN's sgemm.
// Debian's LibTorch has no Winograd path on AVX2 machines (NNPACK is not built; oneDNN's is
// AVX-512 only), so augment carries its own. Training uses it for the output and the input
// gradient (itself a 3×3 convolution) and keeps LibTorch's weight gradient. Results differ from
// the direct convolution by fp32 rounding, about 1e-6 relative.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace augment {

// True unless AUGMENT_WINOGRAD=0 (the switch for comparing against LibTorch's convolution) or a
// test has turned it off with set_winograd_enabled.
bool winograd_enabled();
void set_winograd_enabled(bool enabled);
// Whether a convolution that needs gradients takes it too: enabled and not AUGMENT_WINOGRAD_TRAIN=0.
bool winograd_trains();

// Whether conv3x3_winograd takes a convolution of x by weight [out, in, 3, 3] (stride 1, padding
// 1): enabled, a 4-d CPU fp32 input outside autocast, fp32 weights, no gradient wanted, and at
// least 8 channels in and out (below that the matrix products are too thin to gain).
bool winograd_applies(const at::Tensor& x, const at::Tensor& weight);

// The weights in the Winograd domain, [36, in, out] fp32: G g Gᵀ per channel pair, computed in
// double; with backward_data, those of the input gradient's convolution ([36, out, in], each
// kernel turned by 180°). Conv3x3Weights computes them once per weight version for inference.
at::Tensor winograd_weights(const at::Tensor& weight, bool backward_data = false);

// conv2d(x, weight, bias, stride 1, padding 1) from the transformed weights u; bias may be
// undefined. Any height and width (partial tiles are padded); the result is in x's memory format.
// Each block of tiles is computed by one thread, so the result does not depend on the thread count.
at::Tensor conv3x3_winograd(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias);

// The transformed weights of one convolution, kept while its weight tensor is unchanged (same
// storage, same version counter: an optimizer step or an EMA copy bumps it). One forward pass at
// a time: the cache is not guarded against concurrent calls on the same layer.
class Conv3x3Weights {
 public:
  // conv2d(x, weight, bias, stride 1, padding 1), through Winograd where winograd_applies, or,
  // when gradients are wanted, where winograd_trains (bias defined).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

 private:
  at::Tensor u_;
  const void* data_ = nullptr;
  std::int64_t version_ = -1;
};

}  // namespace augment
