#include "models/group_norm_cpu.h"

#include <cmath>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "models/torch_compat.h"
#include "models/vector_clones.h"

namespace augment {

namespace {

constexpr double kEps = 1e-5;

struct Geometry {
  int64_t n, c, hw, groups, per_group;
};

// Sums over the positions of one sample, per channel: s1 += a, s2 += a * b (b may be a itself).
AUGMENT_VECTOR_CLONES void channel_sums(const float* a, const float* b, int64_t hw, int64_t c, float* s1, float* s2) {
  for (int64_t i = 0; i < c; ++i) s1[i] = s2[i] = 0.0f;
  for (int64_t p = 0; p < hw; ++p) {
    const float* ap = a + p * c;
    const float* bp = b + p * c;
    for (int64_t i = 0; i < c; ++i) {
      s1[i] += ap[i];
      s2[i] += ap[i] * bp[i];
    }
  }
}

// out = a * scale[c] + b * bscale[c] + shift[c] for every position (b may be null).
AUGMENT_VECTOR_CLONES void channel_affine(const float* a, const float* b, int64_t hw, int64_t c, const float* scale,
                                          const float* bscale, const float* shift, float* out) {
  for (int64_t p = 0; p < hw; ++p) {
    const float* ap = a + p * c;
    float* op = out + p * c;
    if (b) {
      const float* bp = b + p * c;
      for (int64_t i = 0; i < c; ++i) op[i] = ap[i] * scale[i] + bp[i] * bscale[i] + shift[i];
    } else {
      for (int64_t i = 0; i < c; ++i) op[i] = ap[i] * scale[i] + shift[i];
    }
  }
}

// Per sample: mean and 1/std of each group (from per-channel sums in double, so E[x^2] - E[x]^2
// keeps its digits), then z = x * scale[c] + shift[c].
void forward_kernel(const float* x, const float* w, const float* b, const Geometry& g, float* z, float* mean,
                    float* rstd) {
  at::parallel_for(0, g.n, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> s1(g.c), s2(g.c), scale(g.c), shift(g.c);
    for (int64_t s = begin; s < end; ++s) {
      const float* xs = x + s * g.hw * g.c;
      channel_sums(xs, xs, g.hw, g.c, s1.data(), s2.data());
      for (int64_t k = 0; k < g.groups; ++k) {
        double m = 0, q = 0;
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) m += s1[i], q += s2[i];
        const double count = static_cast<double>(g.hw * g.per_group);
        m /= count;
        const double var = std::max(0.0, q / count - m * m);
        const double r = 1.0 / std::sqrt(var + kEps);
        mean[s * g.groups + k] = static_cast<float>(m);
        rstd[s * g.groups + k] = static_cast<float>(r);
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) {
          const double sc = r * (w ? w[i] : 1.0f);
          scale[i] = static_cast<float>(sc);
          shift[i] = static_cast<float>((b ? b[i] : 0.0f) - m * sc);
        }
      }
      channel_affine(xs, nullptr, g.hw, g.c, scale.data(), nullptr, shift.data(), z + s * g.hw * g.c);
    }
  });
}

// dx = rstd * (w dz - mean_g(w dz) - xhat mean_g(w dz xhat)) per sample and group; the
// per-sample sums of dz and dz * x also give dweight and dbias.
void backward_kernel(const float* dz, const float* x, const float* mean, const float* rstd, const float* w,
                     const Geometry& g, float* dx, float* dw_per_sample, float* db_per_sample) {
  at::parallel_for(0, g.n, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> sdz(g.c), sdzx(g.c), a(g.c), bx(g.c), shift(g.c);
    for (int64_t s = begin; s < end; ++s) {
      const float* dzs = dz + s * g.hw * g.c;
      const float* xs = x + s * g.hw * g.c;
      channel_sums(dzs, xs, g.hw, g.c, sdz.data(), sdzx.data());
      for (int64_t k = 0; k < g.groups; ++k) {
        const double m = mean[s * g.groups + k], r = rstd[s * g.groups + k];
        double sum_a = 0, sum_b = 0;  // sums of w dz and of w dz xhat over the group
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) {
          const double wi = w ? w[i] : 1.0;
          const double dw = r * (sdzx[i] - m * sdz[i]);
          dw_per_sample[s * g.c + i] = static_cast<float>(dw);
          db_per_sample[s * g.c + i] = sdz[i];
          sum_a += wi * sdz[i];
          sum_b += wi * dw;
        }
        const double count = static_cast<double>(g.hw * g.per_group);
        const double coef_x = -r * r * sum_b / count;
        const double coef_1 = -r * sum_a / count + m * r * r * sum_b / count;
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) {
          a[i] = static_cast<float>(r * (w ? w[i] : 1.0f));
          bx[i] = static_cast<float>(coef_x);
          shift[i] = static_cast<float>(coef_1);
        }
      }
      channel_affine(dzs, xs, g.hw, g.c, a.data(), bx.data(), shift.data(), dx + s * g.hw * g.c);
    }
  });
}

Geometry geometry_of(const at::Tensor& x, int64_t groups) {
  return {x.size(0), x.size(1), x.size(2) * x.size(3), groups, x.size(1) / groups};
}

const float* data_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

at::Tensor forward_into(const at::Tensor& x, int64_t groups, const at::Tensor& w, const at::Tensor& b, at::Tensor& mean,
                        at::Tensor& rstd) {
  const auto g = geometry_of(x, groups);
  auto z = torch::empty_like(x, torch::MemoryFormat::ChannelsLast);
  mean = torch::empty({g.n, g.groups}, x.options());
  rstd = torch::empty({g.n, g.groups}, x.options());
  forward_kernel(x.data_ptr<float>(), data_or_null(w), data_or_null(b), g, z.data_ptr<float>(), mean.data_ptr<float>(),
                 rstd.data_ptr<float>());
  return z;
}

class GroupNormChannelsLast : public torch::autograd::Function<GroupNormChannelsLast> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b, int64_t groups) {
    const auto in = x.detach().contiguous(torch::MemoryFormat::ChannelsLast);
    const auto wd = w.detach().contiguous(), bd = b.detach().contiguous();
    at::Tensor mean, rstd;
    auto z = forward_into(in, groups, wd, bd, mean, rstd);
    ctx->save_for_backward({in, wd, mean, rstd});
    ctx->saved_data["groups"] = groups;
    return z;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto g = geometry_of(x, ctx->saved_data["groups"].toInt());
    const auto dz = grads[0].detach().contiguous(torch::MemoryFormat::ChannelsLast);
    auto dx = torch::empty_like(x, torch::MemoryFormat::ChannelsLast);
    auto dw = torch::empty({g.n, g.c}, x.options()), db = torch::empty({g.n, g.c}, x.options());
    backward_kernel(dz.data_ptr<float>(), x.data_ptr<float>(), saved[2].data_ptr<float>(), saved[3].data_ptr<float>(),
                    saved[1].data_ptr<float>(), g, dx.data_ptr<float>(), dw.data_ptr<float>(), db.data_ptr<float>());
    return {dx, dw.sum(0), db.sum(0), at::Tensor()};
  }
};

}  // namespace

bool group_norm_cpu_applies(const at::Tensor& x) {
  return x.device().is_cpu() && x.dim() == 4 && x.scalar_type() == at::kFloat && x.size(1) > 1 && !x.is_contiguous() &&
         x.is_contiguous(at::MemoryFormat::ChannelsLast) && !compat::autocast_enabled(false);
}

at::Tensor group_norm_channels_last(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                                    const at::Tensor& bias) {
  if (!group_norm_cpu_applies(x) || x.size(1) % groups != 0 || (weight.defined() && weight.scalar_type() != at::kFloat))
    return torch::group_norm(x, groups, weight, bias, kEps, true);
  const bool affine = weight.defined();
  const bool grad = torch::GradMode::is_enabled() &&
                    (x.requires_grad() || (affine && (weight.requires_grad() || bias.requires_grad())));
  if (!grad) {
    at::Tensor mean, rstd;
    return forward_into(x, groups, affine ? weight.contiguous() : at::Tensor(),
                        affine ? bias.contiguous() : at::Tensor(), mean, rstd);
  }
  // Autograd functions take defined tensors only: without affine parameters, ones and zeros.
  const auto w = affine ? weight : torch::ones({x.size(1)}, x.options());
  const auto b = affine ? bias : torch::zeros({x.size(1)}, x.options());
  return GroupNormChannelsLast::apply(x, w, b, groups);
}

}  // namespace augment
