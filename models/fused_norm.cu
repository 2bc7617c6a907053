// silu(group_norm(x)) in one kernel, for inference on CUDA: one block per (image, group) finds
// the group's mean and variance (two passes over data that is still in cache) and writes the
// normalised, scaled, shifted and SiLU-activated values in the input's own type. LibTorch runs
// the same as two kernels, and under bf16 autocast also casts to fp32 and back between them.
// No LibTorch headers here, so nvcc compiles this file in seconds.
#include "models/fused_norm_kernel.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace augment {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float load(const float* p, long i) { return p[i]; }
__device__ __forceinline__ float load(const __nv_bfloat16* p, long i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float load(const __half* p, long i) { return __half2float(p[i]); }
__device__ __forceinline__ void store(float* p, long i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, long i, float v) { p[i] = __float2bfloat16(v); }
__device__ __forceinline__ void store(__half* p, long i, float v) { p[i] = __float2half(v); }

// Sum over the block; every thread gets the result.
__device__ float block_sum(float v, float* shared) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < (blockDim.x >> 5) ? shared[threadIdx.x] : 0.0f;
  if (warp == 0) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  v = shared[0];
  __syncthreads();  // shared[] is reused by the next call
  return v;
}

// Element i of group g of image n: its offset and its channel, for either layout.
struct Layout {
  long channels, pixels, per_group;
  bool channels_last;
  __device__ long offset(long n, long g, long i, long* channel) const {
    if (channels_last) {
      const long p = i / per_group, c = g * per_group + i % per_group;
      *channel = c;
      return (n * pixels + p) * channels + c;
    }
    const long c = g * per_group + i / pixels;
    *channel = c;
    return (n * channels + c) * pixels + i % pixels;
  }
};

template <typename T>
__global__ void group_norm_silu_kernel(const T* x, T* y, const float* weight, const float* bias, Layout layout,
                                       int groups, float eps) {
  __shared__ float shared[32];
  const long n = blockIdx.x / groups, g = blockIdx.x % groups;
  const long count = layout.per_group * layout.pixels;
  long c = 0;
  float sum = 0.0f;
  for (long i = threadIdx.x; i < count; i += blockDim.x) sum += load(x, layout.offset(n, g, i, &c));
  const float mean = block_sum(sum, shared) / static_cast<float>(count);
  float squares = 0.0f;
  for (long i = threadIdx.x; i < count; i += blockDim.x) {
    const float d = load(x, layout.offset(n, g, i, &c)) - mean;
    squares += d * d;
  }
  const float rstd = rsqrtf(block_sum(squares, shared) / static_cast<float>(count) + eps);
  for (long i = threadIdx.x; i < count; i += blockDim.x) {
    const long at = layout.offset(n, g, i, &c);
    float v = (load(x, at) - mean) * rstd;
    if (weight) v = v * weight[c] + bias[c];
    store(y, at, v / (1.0f + __expf(-v)));
  }
}

template <typename T>
int launch(const void* x, void* y, const float* weight, const float* bias, const GroupNormSiluShape& s, void* stream) {
  const Layout layout{s.channels, s.height * s.width, s.channels / s.groups, s.channels_last};
  const unsigned blocks = static_cast<unsigned>(s.batch * s.groups);
  group_norm_silu_kernel<T><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const T*>(x), static_cast<T*>(y), weight, bias, layout, static_cast<int>(s.groups), s.eps);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int group_norm_silu_cuda(const void* x, void* y, const float* weight, const float* bias,
                         const GroupNormSiluShape& shape, FusedDtype dtype, void* stream) {
  if (shape.batch * shape.groups == 0) return 0;
  switch (dtype) {
    case FusedDtype::kFloat32: return launch<float>(x, y, weight, bias, shape, stream);
    case FusedDtype::kBFloat16: return launch<__nv_bfloat16>(x, y, weight, bias, shape, stream);
    case FusedDtype::kFloat16: return launch<__half>(x, y, weight, bias, shape, stream);
  }
  return -1;
}

const char* cuda_error_text(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace augment
