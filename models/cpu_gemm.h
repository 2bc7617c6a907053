// fp32 matrix products on the CPU through oneDNN's sgemm where the process has it.
//
// Debian's LibTorch 1.13 sends every fp32 matmul to OpenBLAS, whose kernel choice follows a
// table of CPU models: OpenBLAS 0.3.21 does not know recent Xeons (family 6 model 207) and runs
// them on a slow generic kernel, 25-30 GFLOP/s on one core against oneDNN's 105-120 for the
// attention and projection shapes of the U-Net (docs/measurements.md, 2026-12-03). oneDNN picks
// its kernels by instruction set, and LibTorch already loads it for the convolutions.
#pragma once

#include <ATen/core/Tensor.h>

namespace augment {

// True where oneDNN's sgemm was found in the process (Debian's LibTorch links libdnnl.so.2; the
// PyPI wheel keeps its oneDNN private and uses MKL, which needs no help) and AUGMENT_CPU_GEMM is
// not "aten" (the switch for comparing against LibTorch's own products).
bool onednn_gemm_available();

// c = a @ b (+ c where accumulate) for 2-d CPU fp32 tensors; a and b row- or column-major views
// (a transpose is free), c with unit column stride. Falls back to at::mm_out / addmm_ elsewhere.
void gemm_into(at::Tensor& c, const at::Tensor& a, const at::Tensor& b, bool accumulate = false);

// c [m, n] = a [m, k] @ b [k, n] for row-major fp32 buffers with leading dimensions lda, ldb, ldc,
// on the calling thread's share of the cores (one thread inside at::parallel_for): oneDNN's
// sgemm where available, at::mm_out on views of the buffers elsewhere.
void sgemm_rows(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                int64_t ldc);

// x [..., in] @ weight^T [in, out] + bias [out]: torch::nn::functional::linear, differentiable,
// with its products through gemm_into where x is a CPU fp32 tensor outside autocast.
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

}  // namespace augment
