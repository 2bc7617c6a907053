// 3×3 stride-1 convolutions for inference on the CPU in fp32 through Winograd's F(4×4, 3×3).
//
// Sampling is forward passes only, and in fp32 the denoiser's 3×3 convolutions are most of it:
// oneDNN's direct kernels already run them near the machine's fp32 peak (docs/measurements.md,
// 2026-12-03), so the way past that peak is to do less arithmetic. F(4×4, 3×3) (Lavin & Gray,
// 2016) computes each 4×4 output tile from a 6×6 input tile with 36 multiplications per channel
// pair instead of 144: the input and output tiles are transformed, and the products become 36
// matrix products (tiles × in-channels by in-channels × out-channels), run by oneDNN's sgemm.
// Debian's LibTorch has no Winograd path on AVX2 machines (NNPACK is not built; oneDNN's is
// AVX-512 only), so augment carries its own. Training keeps LibTorch's convolution: its backward
// pass is not Winograd, and fp32 rounding differs by about 1e-6 relative between the two.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace augment {

// True unless AUGMENT_WINOGRAD=0 (the switch for comparing against LibTorch's convolution) or a
// test has turned it off with set_winograd_enabled.
bool winograd_enabled();
void set_winograd_enabled(bool enabled);
bool winograd_trains();

// Whether conv3x3_winograd takes a convolution of x by weight [out, in, 3, 3] (stride 1, padding
// 1): enabled, a 4-d CPU fp32 input outside autocast, fp32 weights, no gradient wanted, and at
// least 8 channels in and out (below that the matrix products are too thin to gain).
bool winograd_applies(const at::Tensor& x, const at::Tensor& weight);

// The weights in the Winograd domain, [36, in, out] fp32: G g Gᵀ per channel pair, computed in
// double. Computed once per weight version by Conv3x3Weights.
at::Tensor winograd_weights(const at::Tensor& weight, bool backward_data = false);

// conv2d(x, weight, bias, stride 1, padding 1) from the transformed weights u; bias may be
// undefined. Any height and width (partial tiles are padded); the result is in x's memory format.
// Each block of tiles is computed by one thread, so the result does not depend on the thread count.
at::Tensor conv3x3_winograd(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias);

// The transformed weights of one convolution, kept while its weight tensor is unchanged (same
// storage, same version counter: an optimizer step or an EMA copy bumps it).
class Conv3x3Weights {
 public:
  // conv2d(x, weight, bias, stride 1, padding 1), through Winograd where winograd_applies.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

 private:
  at::Tensor u_;
  const void* data_ = nullptr;
  std::int64_t version_ = -1;
};

}  // namespace augment
