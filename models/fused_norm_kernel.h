// The launcher of the fused GroupNorm+SiLU CUDA kernel (models/fused_norm.cu), in plain C++
// types so that neither side needs the other's headers. Built only where CMake enables CUDA.
#pragma once

#include <cstdint>

namespace augment {

enum class FusedDtype { kFloat32, kBFloat16, kFloat16 };

struct GroupNormSiluShape {
  std::int64_t batch, channels, height, width, groups;
  bool channels_last;  // NHWC in memory; otherwise NCHW contiguous
  float eps;
};

// y = silu(group_norm(x) * weight + bias), weight and bias float32 [channels] or both null.
// Queued on `stream` (a cudaStream_t); returns the cudaError_t of the launch (0: queued).
int group_norm_silu_cuda(const void* x, void* y, const float* weight, const float* bias,
                         const GroupNormSiluShape& shape, FusedDtype dtype, void* stream);
const char* cuda_error_text(int code);

}  // namespace augment
