#include "models/fused_norm.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "models/group_norm_silu_cpu.h"

#ifdef AUGMENT_HAVE_CUDA_KERNELS
#include <c10/cuda/CUDAStream.h>

#include "models/fused_norm_kernel.h"
#endif

namespace augment {

namespace {

// augment's CPU kernel, unless AUGMENT_FUSED_KERNELS=0 asks for LibTorch's ops.
bool cpu_kernel_takes(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  return fused_kernels_switched_on() && group_norm_silu_cpu_applies(x, w, b);
}

}  // namespace

torch::Tensor group_norm_in_input_type(const torch::Tensor& x, int groups, torch::Tensor w, torch::Tensor b) {
  if (cpu_kernel_takes(x, w, b)) return group_norm_silu_cpu(x, groups, w, b, /*silu=*/false);
  // Under CPU autocast the convolutions hand bf16 activations to the norms, and LibTorch 1.13's
  // CPU group norm refuses a bf16 input with fp32 affine parameters; casting the (small) affine
  // parameters keeps the norm in bf16, which is where the speed is.
  if (w.defined() && w.scalar_type() != x.scalar_type()) {
    w = w.to(x.scalar_type());
    b = b.to(x.scalar_type());
  }
  return torch::group_norm(x, groups, w, b, 1e-5, /*cudnn_enabled=*/true);
}

bool fused_kernels_switched_on() {
  static const bool on = [] {
    const char* v = std::getenv("AUGMENT_FUSED_KERNELS");
    return !(v && std::string(v) == "0");
  }();
  return on;
}

bool fused_kernels_enabled() {
#ifdef AUGMENT_HAVE_CUDA_KERNELS
  return fused_kernels_switched_on();
#else
  return false;
#endif
}

bool fuses_group_norm_silu(const torch::Tensor& x) {
  if (!fused_kernels_enabled() || !x.is_cuda() || x.dim() != 4 || torch::GradMode::is_enabled()) return false;
  const auto t = x.scalar_type();
  if (t != torch::kFloat32 && t != torch::kBFloat16 && t != torch::kHalf) return false;
  return x.is_contiguous() || x.is_contiguous(torch::MemoryFormat::ChannelsLast);
}

torch::Tensor group_norm_silu(const torch::Tensor& x, int groups, const torch::Tensor& weight,
                              const torch::Tensor& bias) {
#ifdef AUGMENT_HAVE_CUDA_KERNELS
  if (fuses_group_norm_silu(x)) {
    const bool channels_last = !x.is_contiguous();
    auto y = torch::empty_like(x, channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous);
    torch::Tensor w, b;
    if (weight.defined()) {
      w = weight.to(x.device(), torch::kFloat32).contiguous();
      b = bias.to(x.device(), torch::kFloat32).contiguous();
    }
    const GroupNormSiluShape shape{x.size(0), x.size(1), x.size(2), x.size(3), groups, channels_last, 1e-5f};
    const auto dtype = x.scalar_type() == torch::kFloat32    ? FusedDtype::kFloat32
                       : x.scalar_type() == torch::kBFloat16 ? FusedDtype::kBFloat16
                                                             : FusedDtype::kFloat16;
    const int err = group_norm_silu_cuda(x.data_ptr(), y.data_ptr(), w.defined() ? w.data_ptr<float>() : nullptr,
                                         b.defined() ? b.data_ptr<float>() : nullptr, shape, dtype,
                                         c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
    if (err != 0) throw std::runtime_error(std::string("group_norm_silu: CUDA launch failed: ") + cuda_error_text(err));
    return y;
  }
#endif
  if (cpu_kernel_takes(x, weight, bias)) return group_norm_silu_cpu(x, groups, weight, bias, /*silu=*/true);
  return torch::silu(group_norm_in_input_type(x, groups, weight, bias));
}

}  // namespace augment
