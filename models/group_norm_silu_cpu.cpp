#include "models/group_norm_silu_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "models/vector_clones.h"

namespace augment {

// Named, so its helpers stay apart from group_norm_cpu.cpp's in a unity build.
namespace norm_silu_kernel {
namespace {

constexpr double kEps = 1e-5;
constexpr int kLanes = 8;  // independent double accumulators: a loop the compiler vectorises without reordering

inline float bf16_to_float(std::uint16_t v) {
  const std::uint32_t u = static_cast<std::uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, as c10::BFloat16 does; NaN stays NaN.
inline std::uint16_t float_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const std::uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return f != f ? std::uint16_t{0x7FC0} : static_cast<std::uint16_t>(rounded);
}

// exp(x) to about 1 ulp of fp32 with operations that vectorise: x = n ln2 + r with n the nearest
// integer (the 1.5 * 2^23 addition rounds), 2^n built in the exponent bits, e^r from the Cephes
// expf polynomial on |r| <= ln2 / 2.
inline float exp_vectorisable(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

AUGMENT_VECTOR_CLONES void load_bf16(const std::uint16_t* in, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(in[i]);
}

AUGMENT_VECTOR_CLONES void store_bf16(const float* in, int64_t n, std::uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = float_to_bf16(in[i]);
}

AUGMENT_VECTOR_CLONES double sum_of(const float* a, int64_t n) {
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[i + l];
  }
  double s = 0;
  for (; i < n; ++i) s += a[i];
  for (double l : lanes) s += l;
  return s;
}

AUGMENT_VECTOR_CLONES double squared_deviations(const float* a, int64_t n, double mean) {
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const double d = a[i + l] - mean;
      lanes[l] += d * d;
    }
  }
  double s = 0;
  for (; i < n; ++i) s += (a[i] - mean) * (a[i] - mean);
  for (double l : lanes) s += l;
  return s;
}

// out = silu(a * scale + shift) (or without the silu) over n values of one channel.
AUGMENT_VECTOR_CLONES void plane_affine(const float* a, int64_t n, float scale, float shift, bool silu, float* out) {
  if (silu) {
    for (int64_t i = 0; i < n; ++i) {
      const float z = a[i] * scale + shift;
      out[i] = z / (1.0f + exp_vectorisable(-z));
    }
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] * scale + shift;
  }
}

// Channels-last [hw][c]: per-channel sums, and sums of squared deviations from a per-channel mean.
AUGMENT_VECTOR_CLONES void channel_sums(const float* a, int64_t hw, int64_t c, double* s) {
  for (int64_t i = 0; i < c; ++i) s[i] = 0;
  for (int64_t p = 0; p < hw; ++p) {
    for (int64_t i = 0; i < c; ++i) s[i] += a[p * c + i];
  }
}

AUGMENT_VECTOR_CLONES void channel_squared_deviations(const float* a, int64_t hw, int64_t c, const double* mean,
                                                      double* s) {
  for (int64_t i = 0; i < c; ++i) s[i] = 0;
  for (int64_t p = 0; p < hw; ++p) {
    for (int64_t i = 0; i < c; ++i) {
      const double d = a[p * c + i] - mean[i];
      s[i] += d * d;
    }
  }
}

AUGMENT_VECTOR_CLONES void channel_affine(const float* a, int64_t hw, int64_t c, const float* scale, const float* shift,
                                          bool silu, float* out) {
  for (int64_t p = 0; p < hw; ++p) {
    const float* ap = a + p * c;
    float* op = out + p * c;
    if (silu) {
      for (int64_t i = 0; i < c; ++i) {
        const float z = ap[i] * scale[i] + shift[i];
        op[i] = z / (1.0f + exp_vectorisable(-z));
      }
    } else {
      for (int64_t i = 0; i < c; ++i) op[i] = ap[i] * scale[i] + shift[i];
    }
  }
}

struct Geometry {
  int64_t n, c, hw, groups, per_group;
  bool bf16, channels_last;
  int64_t sample_size() const { return c * hw; }
};

// One sample's (or group's) values as fp32: the tensor's own memory for fp32, a converted copy for bf16.
const float* as_float(const void* base, int64_t offset, int64_t count, bool bf16, std::vector<float>& buffer) {
  if (!bf16) return static_cast<const float*>(base) + offset;
  buffer.resize(static_cast<std::size_t>(count));
  load_bf16(static_cast<const std::uint16_t*>(base) + offset, count, buffer.data());
  return buffer.data();
}

// Where the fp32 results go before the store: the output itself for fp32, a buffer for bf16.
float* output_float(void* base, int64_t offset, int64_t count, bool bf16, std::vector<float>& buffer) {
  if (!bf16) return static_cast<float*>(base) + offset;
  buffer.resize(static_cast<std::size_t>(count));
  return buffer.data();
}

void store(const float* values, void* base, int64_t offset, int64_t count, bool bf16) {
  if (bf16) store_bf16(values, count, static_cast<std::uint16_t*>(base) + offset);
}

float rstd_of(double squared_deviations_sum, double count) {
  return static_cast<float>(1.0 / std::sqrt(squared_deviations_sum / count + kEps));
}

// NCHW: the channels of one group of one sample are contiguous, one task per (sample, group).
void nchw_kernel(const void* x, const float* w, const float* b, const Geometry& g, bool silu, void* y) {
  const int64_t len = g.per_group * g.hw;
  at::parallel_for(0, g.n * g.groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> in_buffer, out_buffer;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t first_channel = (task % g.groups) * g.per_group;
      const int64_t offset = (task / g.groups) * g.sample_size() + first_channel * g.hw;
      const float* a = as_float(x, offset, len, g.bf16, in_buffer);
      const double mean = sum_of(a, len) / static_cast<double>(len);
      const float r = rstd_of(squared_deviations(a, len, mean), static_cast<double>(len));
      float* out = output_float(y, offset, len, g.bf16, out_buffer);
      for (int64_t j = 0; j < g.per_group; ++j) {
        const int64_t ch = first_channel + j;
        const float scale = r * (w ? w[ch] : 1.0f);
        const float shift = (b ? b[ch] : 0.0f) - static_cast<float>(mean) * scale;
        plane_affine(a + j * g.hw, g.hw, scale, shift, silu, out + j * g.hw);
      }
      store(out, y, offset, len, g.bf16);
    }
  });
}

// Channels-last: one sample is [hw][c], one task per sample; statistics per channel, then per group.
void channels_last_kernel(const void* x, const float* w, const float* b, const Geometry& g, bool silu, void* y) {
  const int64_t len = g.sample_size();
  const double count = static_cast<double>(g.per_group * g.hw);
  at::parallel_for(0, g.n, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> in_buffer, out_buffer, scale(g.c), shift(g.c);
    std::vector<double> sums(g.c), channel_mean(g.c);
    for (int64_t s = begin; s < end; ++s) {
      const int64_t offset = s * len;
      const float* a = as_float(x, offset, len, g.bf16, in_buffer);
      channel_sums(a, g.hw, g.c, sums.data());
      for (int64_t k = 0; k < g.groups; ++k) {
        double m = 0;
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) m += sums[i];
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) channel_mean[i] = m / count;
      }
      channel_squared_deviations(a, g.hw, g.c, channel_mean.data(), sums.data());
      for (int64_t k = 0; k < g.groups; ++k) {
        double q = 0;
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) q += sums[i];
        const float r = rstd_of(q, count);
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) {
          scale[i] = r * (w ? w[i] : 1.0f);
          shift[i] = (b ? b[i] : 0.0f) - static_cast<float>(channel_mean[i]) * scale[i];
        }
      }
      float* out = output_float(y, offset, len, g.bf16, out_buffer);
      channel_affine(a, g.hw, g.c, scale.data(), shift.data(), silu, out);
      store(out, y, offset, len, g.bf16);
    }
  });
}

bool affine_fits(const at::Tensor& p, int64_t channels) {
  return !p.defined() || (p.device().is_cpu() && p.dim() == 1 && p.size(0) == channels &&
                          (p.scalar_type() == at::kFloat || p.scalar_type() == at::kBFloat16));
}

}  // namespace
}  // namespace norm_silu_kernel

namespace kernel = norm_silu_kernel;

bool group_norm_silu_cpu_applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!x.defined() || !x.device().is_cpu() || x.dim() != 4 || x.size(1) < 2) return false;
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16) return false;
  if (!x.is_contiguous() && !x.is_contiguous(at::MemoryFormat::ChannelsLast)) return false;
  if (!kernel::affine_fits(weight, x.size(1)) || !kernel::affine_fits(bias, x.size(1)) ||
      weight.defined() != bias.defined())
    return false;
  const bool records = torch::GradMode::is_enabled() &&
                       (x.requires_grad() || (weight.defined() && (weight.requires_grad() || bias.requires_grad())));
  return !records;
}

at::Tensor group_norm_silu_cpu(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                               bool silu) {
  if (!group_norm_silu_cpu_applies(x, weight, bias) || groups < 1 || x.size(1) % groups != 0) {
    auto z = torch::group_norm(x, groups, weight.defined() ? weight.to(x.scalar_type()) : weight,
                               bias.defined() ? bias.to(x.scalar_type()) : bias, kernel::kEps, true);
    return silu ? torch::silu(z) : z;
  }
  // NCHW wins where a tensor is both (one pixel, or one channel per position).
  const bool channels_last = !x.is_contiguous();
  const kernel::Geometry g{x.size(0),    x.size(1),          x.size(2) * x.size(3),
                           groups,       x.size(1) / groups, x.scalar_type() == at::kBFloat16,
                           channels_last};
  auto y = torch::empty_like(x, channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  at::Tensor w, b;
  if (weight.defined()) {
    w = weight.detach().to(at::kFloat).contiguous();
    b = bias.detach().to(at::kFloat).contiguous();
  }
  const float* wp = w.defined() ? w.data_ptr<float>() : nullptr;
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  if (channels_last)
    kernel::channels_last_kernel(x.data_ptr(), wp, bp, g, silu, y.data_ptr());
  else
    kernel::nchw_kernel(x.data_ptr(), wp, bp, g, silu, y.data_ptr());
  return y;
}

}  // namespace augment
