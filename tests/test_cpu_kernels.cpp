// The CPU kernels of the denoiser (attention, oneDNN products, group norm + SiLU forward and
// backward) against the LibTorch ops they replace.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include "models/attention.h"
#include "models/cpu_gemm.h"
#include "models/group_norm_silu_cpu.h"

using namespace augment;

namespace {

// Relative to the largest reference magnitude: the kernels sum in different orders, and fp32
// rounding is all that may separate them.
void check_close(const torch::Tensor& got, const torch::Tensor& want, double tol = 1e-5) {
  REQUIRE(got.sizes() == want.sizes());
  const double scale = std::max(1.0, want.abs().max().item<double>());
  CHECK((got - want).abs().max().item<double>() <= tol * scale);
}

struct Grads {
  torch::Tensor out, dqkv;
};

Grads run(AttentionKernel kernel, const torch::Tensor& qkv0, const torch::Tensor& upstream, int64_t heads) {
  auto qkv = qkv0.clone().requires_grad_(true);
  auto out = multi_head_attention(qkv, heads, kernel);
  (out * upstream).sum().backward();
  return {out.detach(), qkv.grad()};
}

}  // namespace

TEST_CASE("attention: the sliced and fused kernels give LibTorch matmul's outputs and gradients in fp32") {
  torch::manual_seed(3);
  const int64_t n = 3, t = 20, heads = 2, d = 8;
  auto qkv = torch::randn({n, t, 3 * heads * d});
  auto upstream = torch::randn({n, t, heads * d});
  const auto want = run(AttentionKernel::kMatmul, qkv, upstream, heads);
  // The output is a convex mix of v per head: a wrong head split or scale changes it visibly.
  CHECK(want.out.abs().max().item<double>() > 0.1);
  for (auto kernel : {AttentionKernel::kSliced, AttentionKernel::kFused, AttentionKernel::kAuto}) {
    CAPTURE(static_cast<int>(kernel));
    const auto got = run(kernel, qkv, upstream, heads);
    check_close(got.out, want.out);
    check_close(got.dqkv, want.dqkv);
    torch::NoGradGuard no_grad;  // the inference path (no saved probabilities) agrees too
    check_close(multi_head_attention(qkv, heads, kernel), want.out);
  }
}

TEST_CASE("attention: heads are independent - changing one head's values moves only that head's output") {
  torch::manual_seed(4);
  const int64_t heads = 2, d = 4, c = heads * d;
  auto qkv = torch::randn({2, 9, 3 * c});
  auto changed = qkv.clone();
  changed.slice(2, 2 * c + d, 3 * c).add_(1.5);  // the values of head 1: its output moves by 1.5
  for (auto kernel : {AttentionKernel::kSliced, AttentionKernel::kMatmul}) {
    const auto a = multi_head_attention(qkv, heads, kernel), b = multi_head_attention(changed, heads, kernel);
    check_close(b.slice(2, 0, d), a.slice(2, 0, d));
    check_close(b.slice(2, d), a.slice(2, d) + 1.5);
  }
}

TEST_CASE("cpu gemm: products of transposed and strided views - and the linear layer with its gradients") {
  torch::manual_seed(5);
  auto a = torch::randn({7, 5}), b = torch::randn({6, 5});
  auto c = torch::empty({7, 6});
  gemm_into(c, a, b.t());  // b read column-major
  check_close(c, torch::mm(a, b.t()));
  auto wide = torch::randn({5, 20});
  auto strided = wide.slice(1, 3, 9);  // row stride 20
  auto c2 = torch::ones({7, 6});
  gemm_into(c2, a, strided, /*accumulate=*/true);
  check_close(c2, torch::mm(a, strided) + 1);

  for (bool with_bias : {true, false}) {
    auto x = torch::randn({2, 4, 5}, torch::requires_grad());
    auto w = torch::randn({3, 5}, torch::requires_grad());
    auto bias = with_bias ? torch::randn({3}, torch::requires_grad()) : torch::Tensor();
    auto up = torch::randn({2, 4, 3});
    auto y = linear(x, w, bias);
    (y * up).sum().backward();
    auto x2 = x.detach().clone().requires_grad_(true), w2 = w.detach().clone().requires_grad_(true);
    auto b2 = with_bias ? bias.detach().clone().requires_grad_(true) : torch::Tensor();
    auto y2 = torch::nn::functional::linear(x2, w2, b2);
    (y2 * up).sum().backward();
    check_close(y.detach(), y2.detach());
    check_close(x.grad(), x2.grad());
    check_close(w.grad(), w2.grad());
    if (with_bias) check_close(bias.grad(), b2.grad());
  }
}

TEST_CASE("group norm and silu on the CPU: LibTorch gradients in fp32 and bf16 - NCHW and channels-last") {
  torch::manual_seed(6);
  for (auto dims : {std::vector<int64_t>{3, 12, 5, 7}, std::vector<int64_t>{2, 6, 1, 2}}) {
    for (auto format : {torch::MemoryFormat::Contiguous, torch::MemoryFormat::ChannelsLast}) {
      for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
        for (bool affine : {true, false}) {
          for (bool silu : {true, false}) {
            const bool channels_last = format == torch::MemoryFormat::ChannelsLast, bf16 = dtype == torch::kBFloat16;
            CAPTURE(dims[1]);
            CAPTURE(channels_last);
            CAPTURE(bf16);
            CAPTURE(affine);
            CAPTURE(silu);
            const int64_t c = dims[1], groups = 3;
            // An offset mean and a spread the norm has to remove; inputs that bf16 holds exactly.
            const auto x0 = (torch::randn(dims) * 2.5 + 0.7).to(dtype).contiguous(format);
            const auto up = torch::randn(dims).to(dtype);
            const auto w0 = torch::randn({c}), b0 = torch::randn({c});
            REQUIRE(group_norm_silu_cpu_applies(x0, w0, b0));
            auto x = x0.clone().requires_grad_(true);
            auto w = w0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
            auto y = group_norm_silu_cpu(x, groups, affine ? w : torch::Tensor(), affine ? b : torch::Tensor(), silu);
            CHECK(y.is_contiguous(format));
            CHECK((y.scalar_type() == dtype));
            (y.to(torch::kFloat32) * up.to(torch::kFloat32)).sum().backward();
            CHECK((x.grad().scalar_type() == dtype));
            // The reference in fp32 from the same values.
            auto xr = x0.to(torch::kFloat32).contiguous().requires_grad_(true);
            auto wr = w0.clone().requires_grad_(true), br = b0.clone().requires_grad_(true);
            auto yr = torch::group_norm(xr, groups, affine ? wr : torch::Tensor(), affine ? br : torch::Tensor(), 1e-5);
            if (silu) yr = torch::silu(yr);
            (yr * up.to(torch::kFloat32)).sum().backward();
            // fp32: summation order; bf16: the rounding of each output (2^-8 relative).
            const double out_tol = bf16 ? 8e-3 : 1e-5, grad_tol = bf16 ? 1e-2 : 1e-4;
            check_close(y.detach().to(torch::kFloat32).contiguous(), yr.detach(), out_tol);
            check_close(x.grad().to(torch::kFloat32).contiguous(), xr.grad(), grad_tol);
            if (affine) {
              check_close(w.grad(), wr.grad(), 1e-4);
              check_close(b.grad(), br.grad(), 1e-4);
            }
          }
        }
      }
    }
  }
}

TEST_CASE(
    "group norm and silu on the CPU: inference matches the LibTorch fp32 ops - NCHW and channels-last in fp32 and "
    "bf16") {
  torch::manual_seed(11);
  torch::NoGradGuard no_grad;
  // Odd sizes (7x5 positions, 2 channels per group) and one position with 16 channels.
  for (auto dims :
       {std::vector<int64_t>{3, 12, 5, 7}, std::vector<int64_t>{2, 16, 1, 1}, std::vector<int64_t>{4, 64, 9, 9}}) {
    for (auto format : {torch::MemoryFormat::Contiguous, torch::MemoryFormat::ChannelsLast}) {
      for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
        for (bool affine : {true, false}) {
          for (bool silu : {true, false}) {
            CAPTURE(dims[1]);
            CAPTURE(dims[2]);
            const bool channels_last = format == torch::MemoryFormat::ChannelsLast, bf16 = dtype == torch::kBFloat16;
            CAPTURE(channels_last);
            CAPTURE(bf16);
            CAPTURE(affine);
            CAPTURE(silu);
            const int64_t groups = dims[1] / 2;
            // An offset mean and a spread the norm has to remove; values that bf16 holds exactly.
            const auto x = (torch::randn(dims) * 2.5 + 0.7).to(dtype).contiguous(format);
            const auto w = affine ? torch::randn({dims[1]}) : torch::Tensor();
            const auto b = affine ? torch::randn({dims[1]}) : torch::Tensor();
            REQUIRE(group_norm_silu_cpu_applies(x, w, b));
            const auto y = group_norm_silu_cpu(x, groups, w, b, silu);
            CHECK((y.scalar_type() == dtype));
            CHECK(y.is_contiguous(format));
            auto want = torch::group_norm(x.to(torch::kFloat32).contiguous(), groups, w, b, 1e-5);
            if (silu) want = torch::silu(want);
            // fp32: summation order only; bf16: the one rounding of the output (2^-8 relative).
            const double tol = dtype == torch::kFloat32 ? 1e-5 : 8e-3;
            const auto got = y.to(torch::kFloat32).contiguous();
            CHECK((got - want).abs().max().item<double>() <= tol * std::max(1.0, want.abs().max().item<double>()));
          }
        }
      }
    }
  }
}

TEST_CASE("group norm and silu on the CPU: left to LibTorch for strided layouts and other types") {
  auto x = torch::randn({2, 8, 4, 4});
  const auto w = torch::ones({8}), b = torch::zeros({8});
  CHECK(group_norm_silu_cpu_applies(x, w, b));
  CHECK_FALSE(group_norm_silu_cpu_applies(x.transpose(2, 3), w, b));
  CHECK_FALSE(group_norm_silu_cpu_applies(x.to(torch::kFloat64), w, b));
  CHECK_FALSE(group_norm_silu_cpu_applies(x, torch::ones({4}), torch::zeros({4})));
  // The fallback still computes the op.
  const auto xt = x.transpose(2, 3);
  const auto y = group_norm_silu_cpu(xt, 4, w, b, true);
  CHECK((y - torch::silu(torch::group_norm(xt.contiguous(), 4, w, b, 1e-5))).abs().max().item<double>() < 1e-5);
}
