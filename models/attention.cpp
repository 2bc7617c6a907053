#include "models/attention.h"

#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/torch.h>

#include "models/cpu_gemm.h"
#include "models/torch_compat.h"

namespace augment {

namespace {

struct Shape {
  int64_t n, t, heads, d;
  int64_t slices() const { return n * heads; }
};

Shape shape_of(const torch::Tensor& qkv, int64_t heads) {
  if (qkv.dim() != 3 || qkv.size(2) % (3 * heads) != 0)
    throw std::invalid_argument("multi_head_attention: qkv must be [N, T, 3 * heads * d]");
  return {qkv.size(0), qkv.size(1), heads, qkv.size(2) / (3 * heads)};
}

// [N, T, 3, heads, d] view; part 0, 1, 2 of it is q, k, v.
torch::Tensor split_heads(const torch::Tensor& qkv, const Shape& s) { return qkv.view({s.n, s.t, 3, s.heads, s.d}); }

// Slice b = (sample, head) of part p: a [T, d] matrix with row stride 3C, which BLAS reads in place.
torch::Tensor part(const torch::Tensor& heads5, int64_t p, int64_t b, const Shape& s) {
  return heads5.select(0, b / s.heads).select(1, p).select(1, b % s.heads);
}

// Slice b of a [N, T, heads, d] tensor: [T, d] with row stride C.
torch::Tensor head(const torch::Tensor& heads4, int64_t b, const Shape& s) {
  return heads4.select(0, b / s.heads).select(1, b % s.heads);
}

// Each task runs its slices' matrix products one after another on one core (BLAS inside a
// parallel region stays single-threaded), so LibTorch 1.13's bmm, which loops over the batch
// on one core, and the copies matmul makes of strided q/k/v views are both avoided; the
// products go through oneDNN where it is loaded (models/cpu_gemm.h).
void sliced_forward(const torch::Tensor& qkv, const Shape& s, torch::Tensor& out, torch::Tensor* probs) {
  const auto x = split_heads(qkv, s);
  out = torch::empty({s.n, s.t, s.heads, s.d}, qkv.options());
  if (probs) *probs = torch::empty({s.slices(), s.t, s.t}, qkv.options());
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.d));
  at::parallel_for(0, s.slices(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      auto logits = torch::empty({s.t, s.t}, qkv.options());
      gemm_into(logits, part(x, 0, b, s), part(x, 1, b, s).t());
      logits.mul_(scale);
      auto p = probs ? probs->select(0, b) : torch::empty_like(logits);
      at::_softmax_out(p, logits, 1, false);
      auto o = head(out, b, s);
      gemm_into(o, p, part(x, 2, b, s));
    }
  });
  out = out.view({s.n, s.t, s.heads * s.d});
}

torch::Tensor sliced_backward(const torch::Tensor& grad_out, const torch::Tensor& qkv, const torch::Tensor& probs,
                              const Shape& s) {
  const auto x = split_heads(qkv, s);
  const auto go = grad_out.contiguous().view({s.n, s.t, s.heads, s.d});
  auto grad = torch::empty({s.n, s.t, 3, s.heads, s.d}, qkv.options());
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.d));
  at::parallel_for(0, s.slices(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const auto p = probs.select(0, b);
      const auto g = head(go, b, s);
      auto dv = part(grad, 2, b, s);
      gemm_into(dv, p.t(), g);
      auto dp = torch::empty({s.t, s.t}, qkv.options());
      gemm_into(dp, g, part(x, 2, b, s).t());
      auto dlogits = at::_softmax_backward_data(dp, p, 1, p.scalar_type());
      dlogits.mul_(scale);
      auto dq = part(grad, 0, b, s);
      gemm_into(dq, dlogits, part(x, 1, b, s));
      auto dk = part(grad, 1, b, s);
      gemm_into(dk, dlogits.t(), part(x, 0, b, s));
    }
  });
  return grad.view({s.n, s.t, 3 * s.heads * s.d});
}

class SlicedAttention : public torch::autograd::Function<SlicedAttention> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& qkv, int64_t heads) {
    const auto s = shape_of(qkv, heads);
    // Detached: the out= products below refuse inputs that require grad, whatever the worker
    // threads' grad mode is.
    const auto in = qkv.detach().contiguous();
    torch::Tensor out, probs;
    sliced_forward(in, s, out, &probs);
    ctx->save_for_backward({in, probs});
    ctx->saved_data["heads"] = heads;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto s = shape_of(saved[0], ctx->saved_data["heads"].toInt());
    return {sliced_backward(grads[0].detach(), saved[0].detach(), saved[1].detach(), s), torch::Tensor()};
  }
};

torch::Tensor matmul_attention(const torch::Tensor& qkv, const Shape& s) {
  auto x = split_heads(qkv, s).permute({2, 0, 3, 1, 4});  // [3, N, heads, T, d]
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.d));
  auto weights = torch::softmax(torch::matmul(x[0] * scale, x[1].transpose(-1, -2)), -1);  // [N, heads, T, T]
  auto out = torch::matmul(weights.to(x.scalar_type()), x[2]);                             // [N, heads, T, d]
  return out.permute({0, 2, 1, 3}).reshape({s.n, s.t, s.heads * s.d});
}

torch::Tensor fused_attention(const torch::Tensor& qkv, const Shape& s) {
#if TORCH_VERSION_MAJOR >= 2
  auto x = split_heads(qkv, s).permute({2, 0, 3, 1, 4});  // [3, N, heads, T, d]
  auto out = at::scaled_dot_product_attention(x[0], x[1], x[2]);
  return out.permute({0, 2, 1, 3}).reshape({s.n, s.t, s.heads * s.d});
#else
  return matmul_attention(qkv, s);
#endif
}

bool sliceable(const torch::Tensor& qkv) {
  return qkv.device().is_cpu() && qkv.scalar_type() == torch::kFloat32 && !compat::autocast_enabled(false);
}

}  // namespace

AttentionKernel attention_kernel_from_env() {
  static const AttentionKernel kernel = [] {
    const char* v = std::getenv("AUGMENT_ATTENTION");
    const std::string name = v ? v : "auto";
    if (name == "matmul") return AttentionKernel::kMatmul;
    if (name == "sliced") return AttentionKernel::kSliced;
    if (name == "fused") return AttentionKernel::kFused;
    if (name == "auto" || name.empty()) return AttentionKernel::kAuto;
    throw std::invalid_argument("AUGMENT_ATTENTION must be auto, matmul, sliced or fused, not '" + name + "'");
  }();
  return kernel;
}

torch::Tensor multi_head_attention(const torch::Tensor& qkv, int64_t heads, AttentionKernel kernel) {
  RECORD_FUNCTION("augment::multi_head_attention", std::vector<c10::IValue>({qkv}));
  const auto s = shape_of(qkv, heads);
  if (kernel == AttentionKernel::kAuto) kernel = attention_kernel_from_env();
  if (kernel == AttentionKernel::kAuto) kernel = sliceable(qkv) ? AttentionKernel::kSliced : AttentionKernel::kMatmul;
  switch (kernel) {
    case AttentionKernel::kSliced:
      if (!sliceable(qkv)) return matmul_attention(qkv, s);
      if (torch::GradMode::is_enabled() && qkv.requires_grad()) return SlicedAttention::apply(qkv, heads);
      {
        torch::Tensor out;
        sliced_forward(qkv.contiguous(), s, out, nullptr);
        return out;
      }
    case AttentionKernel::kFused: return fused_attention(qkv, s);
    default: return matmul_attention(qkv, s);
  }
}

}  // namespace augment
