#include "models/cpu_gemm.h"

#include <dlfcn.h>

#include <cstdlib>
#include <string>

#include <torch/torch.h>

#include "models/torch_compat.h"

namespace augment {

namespace {

// oneDNN's C API, row-major (dnnl.h; the header is not part of Debian's runtime package).
using DnnlSgemm = int (*)(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

DnnlSgemm dnnl_sgemm() {
  static const DnnlSgemm f = []() -> DnnlSgemm {
    const char* v = std::getenv("AUGMENT_CPU_GEMM");
    if (v && std::string(v) == "aten") return nullptr;
    return reinterpret_cast<DnnlSgemm>(::dlsym(RTLD_DEFAULT, "dnnl_sgemm"));
  }();
  return f;
}

// How BLAS reads a 2-d view: 'N' row-major with leading dimension stride(0), 'T' column-major
// (a transposed row-major matrix) with leading dimension stride(1); 0 when neither.
char blas_layout(const at::Tensor& m, int64_t& ld) {
  const auto rows = m.size(0), cols = m.size(1);
  if (m.stride(1) == 1 && (rows == 1 || m.stride(0) >= std::max<int64_t>(1, cols))) {
    ld = rows == 1 ? std::max<int64_t>(1, cols) : m.stride(0);
    return 'N';
  }
  if (m.stride(0) == 1 && (cols == 1 || m.stride(1) >= std::max<int64_t>(1, rows))) {
    ld = cols == 1 ? std::max<int64_t>(1, rows) : m.stride(1);
    return 'T';
  }
  return 0;
}

bool gemm_applies(const at::Tensor& x) {
  return onednn_gemm_available() && x.device().is_cpu() && x.scalar_type() == at::kFloat &&
         !compat::autocast_enabled(false);
}

at::Tensor rows_of(const at::Tensor& x) { return x.contiguous().view({-1, x.size(-1)}); }

class Linear : public torch::autograd::Function<Linear> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias) {
    const auto in = rows_of(x.detach());
    const auto w = weight.detach();
    auto sizes = x.sizes().vec();
    sizes.back() = w.size(0);
    auto y = bias.detach().expand({in.size(0), w.size(0)}).contiguous();
    gemm_into(y, in, w.t(), /*accumulate=*/true);
    ctx->save_for_backward({in, w});
    return y.view(sizes);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto in = saved[0].detach(), w = saved[1].detach();
    const auto dy = rows_of(grads[0].detach());
    at::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) {
      dx = torch::empty({dy.size(0), w.size(1)}, dy.options());
      gemm_into(dx, dy, w);
      auto sizes = grads[0].sizes().vec();
      sizes.back() = w.size(1);
      dx = dx.view(sizes);
    }
    if (ctx->needs_input_grad(1)) {
      dw = torch::empty_like(w);
      gemm_into(dw, dy.t(), in);
    }
    if (ctx->needs_input_grad(2)) db = dy.sum(0);
    return {dx, dw, db};
  }
};

}  // namespace

bool onednn_gemm_available() { return dnnl_sgemm() != nullptr; }

void gemm_into(at::Tensor& c, const at::Tensor& a, const at::Tensor& b, bool accumulate) {
  int64_t lda = 0, ldb = 0, ldc = 0;
  const char ta = gemm_applies(a) ? blas_layout(a, lda) : 0;
  const char tb = ta ? blas_layout(b, ldb) : 0;
  const char tc = tb ? blas_layout(c, ldc) : 0;
  if (tc == 'N' && b.scalar_type() == at::kFloat && c.scalar_type() == at::kFloat && c.size(0) == a.size(0) &&
      c.size(1) == b.size(1) && a.size(1) == b.size(0)) {
    if (c.numel() == 0) return;
    const int status = dnnl_sgemm()(ta, tb, c.size(0), c.size(1), a.size(1), 1.0f, a.data_ptr<float>(), lda,
                                    b.data_ptr<float>(), ldb, accumulate ? 1.0f : 0.0f, c.data_ptr<float>(), ldc);
    if (status == 0) return;
  }
  if (accumulate)
    c.addmm_(a, b);
  else
    at::mm_out(c, a, b);
}

void sgemm_rows(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (onednn_gemm_available() && dnnl_sgemm()('N', 'N', m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc) == 0) return;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  auto cv = torch::from_blob(c, {m, n}, {ldc, 1}, f32);
  at::mm_out(cv, torch::from_blob(const_cast<float*>(a), {m, k}, {lda, 1}, f32),
             torch::from_blob(const_cast<float*>(b), {k, n}, {ldb, 1}, f32));
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!gemm_applies(x) || weight.scalar_type() != at::kFloat || x.dim() < 1)
    return torch::nn::functional::linear(x, weight, bias);
  const bool grad = torch::GradMode::is_enabled() &&
                    (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
  // Autograd functions take defined tensors only: a missing bias is a zero one that needs no grad.
  if (grad) return Linear::apply(x, weight, bias.defined() ? bias : torch::zeros({weight.size(0)}, weight.options()));
  auto in = rows_of(x);
  auto y = bias.defined() ? bias.expand({in.size(0), weight.size(0)}).contiguous()
                          : torch::empty({in.size(0), weight.size(0)}, in.options());
  gemm_into(y, in, weight.t(), bias.defined());
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  return y.view(sizes);
}

}  // namespace augment
