#include "models/group_norm_silu_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <immintrin.h>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/torch.h>

#include "models/vector_clones.h"

namespace augment {

// Named, so its helpers stay apart from other files' anonymous ones in a unity build.
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

inline float silu_of(float z) { return z / (1.0f + exp_vectorisable(-z)); }

// The SiLU on AVX2 CPUs without AVX-512, eight lanes at a time with exp_vectorisable's
// polynomial. GCC leaves the plain loops above scalar in their AVX2 copies (the clamp's compares
// may trap, and only AVX-512 has masks to hide that), which made the whole kernel about five times
// slower there: 1.0 s of a 2.8 s reference-model denoising pass (docs/measurements.md, 2026-12-08).
__attribute__((target("avx2"))) inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  const __m256 n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), magic), magic);
  const __m256 r = _mm256_add_ps(_mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f))),
                                 _mm256_mul_ps(n, _mm256_set1_ps(2.12194440e-4f)));
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  for (float c : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(c));
  p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, r), r), r), _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

// v = silu(v) over n floats.
__attribute__((target("avx2"))) void silu_avx2(float* v, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 z = _mm256_loadu_ps(v + i);
    _mm256_storeu_ps(v + i, _mm256_div_ps(z, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, z)))));
  }
  for (; i < n; ++i) v[i] = silu_of(v[i]);
}

// dz = dy silu'(z) over n floats (dz may be z).
__attribute__((target("avx2"))) void silu_slope_avx2(const float* z, const float* dy, int64_t n, float* dz) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 zv = _mm256_loadu_ps(z + i);
    const __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, zv))));
    const __m256 slope = _mm256_mul_ps(sig, _mm256_add_ps(one, _mm256_mul_ps(zv, _mm256_sub_ps(one, sig))));
    _mm256_storeu_ps(dz + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), slope));
  }
  for (; i < n; ++i) {
    const float sig = 1.0f / (1.0f + exp_vectorisable(-z[i]));
    dz[i] = dy[i] * (sig * (1.0f + z[i] * (1.0f - sig)));
  }
}

// Where the intrinsics above replace the compiler's copies: AVX2 without AVX-512 (the AVX-512
// copies vectorise).
bool silu_by_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && !__builtin_cpu_supports("avx512f");
  return yes;
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
  if (silu && silu_by_avx2()) {
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] * scale + shift;
    silu_avx2(out, n);
  } else if (silu) {
    for (int64_t i = 0; i < n; ++i) out[i] = silu_of(a[i] * scale + shift);
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
    if (silu && silu_by_avx2()) {
      for (int64_t i = 0; i < c; ++i) op[i] = ap[i] * scale[i] + shift[i];
      silu_avx2(op, c);
    } else if (silu) {
      for (int64_t i = 0; i < c; ++i) op[i] = silu_of(ap[i] * scale[i] + shift[i]);
    } else {
      for (int64_t i = 0; i < c; ++i) op[i] = ap[i] * scale[i] + shift[i];
    }
  }
}

// sigmoid(z) (1 + z (1 - sigmoid(z))): the derivative of silu at z.
inline float silu_slope(float z) {
  const float sig = 1.0f / (1.0f + exp_vectorisable(-z));
  return sig * (1.0f + z * (1.0f - sig));
}

// One channel of the backward pass: z = xhat * w + b is recomputed and dz = dy silu'(z) (or dy)
// written to `dz`; then the channel's sums of dz and dz xhat, for the weight gradients.
AUGMENT_VECTOR_CLONES void plane_norm_gradient(const float* x, const float* dy, int64_t n, float mean, float rstd,
                                               float w, float b, bool silu, float* dz) {
  if (silu && silu_by_avx2()) {
    for (int64_t i = 0; i < n; ++i) dz[i] = (x[i] - mean) * rstd * w + b;
    silu_slope_avx2(dz, dy, n, dz);
  } else if (silu) {
    for (int64_t i = 0; i < n; ++i) dz[i] = dy[i] * silu_slope((x[i] - mean) * rstd * w + b);
  } else {
    for (int64_t i = 0; i < n; ++i) dz[i] = dy[i];
  }
}

// fp32 lanes over one channel (a few thousand values at most), summed in double.
AUGMENT_VECTOR_CLONES void plane_gradient_sums(const float* x, const float* dz, int64_t n, float mean, float rstd,
                                               double* sum_dz, double* sum_dz_xhat) {
  constexpr int kFloatLanes = 16;
  float l1[kFloatLanes] = {}, l2[kFloatLanes] = {};
  int64_t i = 0;
  for (; i + kFloatLanes <= n; i += kFloatLanes) {
    for (int l = 0; l < kFloatLanes; ++l) {
      l1[l] += dz[i + l];
      l2[l] += dz[i + l] * ((x[i + l] - mean) * rstd);
    }
  }
  double s1 = 0, s2 = 0;
  for (; i < n; ++i) {
    s1 += dz[i];
    s2 += dz[i] * ((x[i] - mean) * rstd);
  }
  for (int l = 0; l < kFloatLanes; ++l) s1 += l1[l], s2 += l2[l];
  *sum_dz = s1;
  *sum_dz_xhat = s2;
}

// dx = rstd (w dz - mean_g(w dz) - xhat mean_g(w dz xhat)) over one channel.
AUGMENT_VECTOR_CLONES void plane_input_gradient(const float* x, const float* dz, int64_t n, float mean, float rstd,
                                                float w, float mean_wdz, float mean_wdz_xhat, float* dx) {
  for (int64_t i = 0; i < n; ++i) {
    const float xhat = (x[i] - mean) * rstd;
    dx[i] = rstd * (w * dz[i] - mean_wdz - xhat * mean_wdz_xhat);
  }
}

// Channels-last [hw][c] versions, with per-channel mean, rstd, w, b (the group's, broadcast).
AUGMENT_VECTOR_CLONES void channel_norm_gradient(const float* x, const float* dy, int64_t hw, int64_t c,
                                                 const float* mean, const float* rstd, const float* w, const float* b,
                                                 bool silu, float* dz) {
  for (int64_t p = 0; p < hw; ++p) {
    const float* xp = x + p * c;
    const float* dp = dy + p * c;
    float* zp = dz + p * c;
    if (silu && silu_by_avx2()) {
      for (int64_t i = 0; i < c; ++i) zp[i] = (xp[i] - mean[i]) * rstd[i] * w[i] + b[i];
      silu_slope_avx2(zp, dp, c, zp);
    } else if (silu) {
      for (int64_t i = 0; i < c; ++i) zp[i] = dp[i] * silu_slope((xp[i] - mean[i]) * rstd[i] * w[i] + b[i]);
    } else {
      for (int64_t i = 0; i < c; ++i) zp[i] = dp[i];
    }
  }
}

// Per-channel sums of dz and dz xhat: fp32 over blocks of positions, double across blocks.
AUGMENT_VECTOR_CLONES void channel_gradient_sums(const float* x, const float* dz, int64_t hw, int64_t c,
                                                 const float* mean, const float* rstd, float* f1, float* f2,
                                                 double* sum_dz, double* sum_dz_xhat) {
  constexpr int64_t kBlock = 64;
  for (int64_t i = 0; i < c; ++i) sum_dz[i] = sum_dz_xhat[i] = 0;
  for (int64_t p0 = 0; p0 < hw; p0 += kBlock) {
    for (int64_t i = 0; i < c; ++i) f1[i] = f2[i] = 0;
    for (int64_t p = p0; p < std::min(hw, p0 + kBlock); ++p) {
      const float* xp = x + p * c;
      const float* zp = dz + p * c;
      for (int64_t i = 0; i < c; ++i) {
        f1[i] += zp[i];
        f2[i] += zp[i] * ((xp[i] - mean[i]) * rstd[i]);
      }
    }
    for (int64_t i = 0; i < c; ++i) sum_dz[i] += f1[i], sum_dz_xhat[i] += f2[i];
  }
}

AUGMENT_VECTOR_CLONES void channel_input_gradient(const float* x, const float* dz, int64_t hw, int64_t c,
                                                  const float* mean, const float* rstd, const float* w,
                                                  const float* mean_wdz, const float* mean_wdz_xhat, float* dx) {
  for (int64_t p = 0; p < hw; ++p) {
    for (int64_t i = 0; i < c; ++i) {
      const int64_t k = p * c + i;
      const float xhat = (x[k] - mean[i]) * rstd[i];
      dx[k] = rstd[i] * (w[i] * dz[k] - mean_wdz[i] - xhat * mean_wdz_xhat[i]);
    }
  }
}

struct Geometry {
  int64_t n, c, hw, groups, per_group;
  bool bf16, channels_last;
  int64_t sample_size() const { return c * hw; }
  double group_size() const { return static_cast<double>(per_group * hw); }
};

Geometry geometry_of(const at::Tensor& x, int64_t groups) {
  return {
      x.size(0),         x.size(1), x.size(2) * x.size(3), groups, x.size(1) / groups, x.scalar_type() == at::kBFloat16,
      !x.is_contiguous()};  // NCHW wins where a tensor is both (one pixel, or one channel)
}

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

// The affine parameters as fp32 (ones and zeros where there are none), and the saved statistics.
struct Params {
  const float* w;
  const float* b;
};

struct Stats {
  float* mean;  // [n, groups]
  float* rstd;
};

// NCHW: the channels of one group of one sample are contiguous, one task per (sample, group).
void nchw_forward(const void* x, Params p, const Geometry& g, bool silu, void* y, Stats st) {
  const int64_t len = g.per_group * g.hw;
  at::parallel_for(0, g.n * g.groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> in_buffer, out_buffer;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t first_channel = (task % g.groups) * g.per_group;
      const int64_t offset = (task / g.groups) * g.sample_size() + first_channel * g.hw;
      const float* a = as_float(x, offset, len, g.bf16, in_buffer);
      const double mean = sum_of(a, len) / static_cast<double>(len);
      const float r = rstd_of(squared_deviations(a, len, mean), static_cast<double>(len));
      st.mean[task] = static_cast<float>(mean);
      st.rstd[task] = r;
      float* out = output_float(y, offset, len, g.bf16, out_buffer);
      for (int64_t j = 0; j < g.per_group; ++j) {
        const int64_t ch = first_channel + j;
        const float scale = r * p.w[ch];
        plane_affine(a + j * g.hw, g.hw, scale, p.b[ch] - static_cast<float>(mean) * scale, silu, out + j * g.hw);
      }
      store(out, y, offset, len, g.bf16);
    }
  });
}

void nchw_backward(const void* x, const void* dy, Params p, const Geometry& g, bool silu, const Stats& st, void* dx,
                   float* dw_per_sample, float* db_per_sample) {
  const int64_t len = g.per_group * g.hw;
  at::parallel_for(0, g.n * g.groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> x_buffer, dy_buffer, dz(static_cast<std::size_t>(len)), out_buffer;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t sample = task / g.groups, first_channel = (task % g.groups) * g.per_group;
      const int64_t offset = sample * g.sample_size() + first_channel * g.hw;
      const float* a = as_float(x, offset, len, g.bf16, x_buffer);
      const float* d = as_float(dy, offset, len, g.bf16, dy_buffer);
      const float mean = st.mean[task], r = st.rstd[task];
      double wdz = 0, wdz_xhat = 0;
      for (int64_t j = 0; j < g.per_group; ++j) {
        const int64_t ch = first_channel + j;
        double s1 = 0, s2 = 0;
        plane_norm_gradient(a + j * g.hw, d + j * g.hw, g.hw, mean, r, p.w[ch], p.b[ch], silu, dz.data() + j * g.hw);
        plane_gradient_sums(a + j * g.hw, dz.data() + j * g.hw, g.hw, mean, r, &s1, &s2);
        db_per_sample[sample * g.c + ch] = static_cast<float>(s1);
        dw_per_sample[sample * g.c + ch] = static_cast<float>(s2);
        wdz += p.w[ch] * s1;
        wdz_xhat += p.w[ch] * s2;
      }
      float* out = output_float(dx, offset, len, g.bf16, out_buffer);
      for (int64_t j = 0; j < g.per_group; ++j) {
        plane_input_gradient(a + j * g.hw, dz.data() + j * g.hw, g.hw, mean, r, p.w[first_channel + j],
                             static_cast<float>(wdz / g.group_size()), static_cast<float>(wdz_xhat / g.group_size()),
                             out + j * g.hw);
      }
      store(out, dx, offset, len, g.bf16);
    }
  });
}

// Channels-last: one sample is [hw][c], one task per sample; statistics per channel, then per group.
void channels_last_forward(const void* x, Params p, const Geometry& g, bool silu, void* y, Stats st) {
  const int64_t len = g.sample_size();
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
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) channel_mean[i] = m / g.group_size();
      }
      channel_squared_deviations(a, g.hw, g.c, channel_mean.data(), sums.data());
      for (int64_t k = 0; k < g.groups; ++k) {
        double q = 0;
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) q += sums[i];
        const float r = rstd_of(q, g.group_size());
        st.mean[s * g.groups + k] = static_cast<float>(channel_mean[k * g.per_group]);
        st.rstd[s * g.groups + k] = r;
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) {
          scale[i] = r * p.w[i];
          shift[i] = p.b[i] - static_cast<float>(channel_mean[i]) * scale[i];
        }
      }
      float* out = output_float(y, offset, len, g.bf16, out_buffer);
      channel_affine(a, g.hw, g.c, scale.data(), shift.data(), silu, out);
      store(out, y, offset, len, g.bf16);
    }
  });
}

void channels_last_backward(const void* x, const void* dy, Params p, const Geometry& g, bool silu, const Stats& st,
                            void* dx, float* dw_per_sample, float* db_per_sample) {
  const int64_t len = g.sample_size();
  at::parallel_for(0, g.n, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> x_buffer, dy_buffer, dz(static_cast<std::size_t>(len)), out_buffer;
    std::vector<float> mean(g.c), rstd(g.c), mean_wdz(g.c), mean_wdz_xhat(g.c), f1(g.c), f2(g.c);
    std::vector<double> s1(g.c), s2(g.c);
    for (int64_t s = begin; s < end; ++s) {
      const int64_t offset = s * len;
      const float* a = as_float(x, offset, len, g.bf16, x_buffer);
      const float* d = as_float(dy, offset, len, g.bf16, dy_buffer);
      for (int64_t i = 0; i < g.c; ++i) {
        mean[i] = st.mean[s * g.groups + i / g.per_group];
        rstd[i] = st.rstd[s * g.groups + i / g.per_group];
      }
      channel_norm_gradient(a, d, g.hw, g.c, mean.data(), rstd.data(), p.w, p.b, silu, dz.data());
      channel_gradient_sums(a, dz.data(), g.hw, g.c, mean.data(), rstd.data(), f1.data(), f2.data(), s1.data(),
                            s2.data());
      for (int64_t k = 0; k < g.groups; ++k) {
        double wdz = 0, wdz_xhat = 0;
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) {
          db_per_sample[s * g.c + i] = static_cast<float>(s1[i]);
          dw_per_sample[s * g.c + i] = static_cast<float>(s2[i]);
          wdz += p.w[i] * s1[i];
          wdz_xhat += p.w[i] * s2[i];
        }
        for (int64_t i = k * g.per_group; i < (k + 1) * g.per_group; ++i) {
          mean_wdz[i] = static_cast<float>(wdz / g.group_size());
          mean_wdz_xhat[i] = static_cast<float>(wdz_xhat / g.group_size());
        }
      }
      float* out = output_float(dx, offset, len, g.bf16, out_buffer);
      channel_input_gradient(a, dz.data(), g.hw, g.c, mean.data(), rstd.data(), p.w, mean_wdz.data(),
                             mean_wdz_xhat.data(), out);
      store(out, dx, offset, len, g.bf16);
    }
  });
}

bool affine_fits(const at::Tensor& p, int64_t channels) {
  return !p.defined() || (p.device().is_cpu() && p.dim() == 1 && p.size(0) == channels &&
                          (p.scalar_type() == at::kFloat || p.scalar_type() == at::kBFloat16));
}

at::MemoryFormat format_of(const Geometry& g) {
  return g.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// y = silu(group_norm(x)) (or the norm alone); w and b are fp32 [C]; mean and rstd [n, groups] come back.
at::Tensor forward(const at::Tensor& x, int64_t groups, const at::Tensor& w, const at::Tensor& b, bool silu,
                   at::Tensor& mean, at::Tensor& rstd) {
  const auto g = geometry_of(x, groups);
  auto y = torch::empty_like(x, format_of(g));
  mean = torch::empty({g.n, g.groups}, x.options().dtype(at::kFloat));
  rstd = torch::empty({g.n, g.groups}, x.options().dtype(at::kFloat));
  const Params p{w.data_ptr<float>(), b.data_ptr<float>()};
  const Stats st{mean.data_ptr<float>(), rstd.data_ptr<float>()};
  if (g.channels_last)
    channels_last_forward(x.data_ptr(), p, g, silu, y.data_ptr(), st);
  else
    nchw_forward(x.data_ptr(), p, g, silu, y.data_ptr(), st);
  return y;
}

std::pair<at::Tensor, at::Tensor> fp32_affine(const at::Tensor& weight, const at::Tensor& bias, int64_t channels,
                                              const at::Tensor& like) {
  if (!weight.defined()) {
    const auto o = like.options().dtype(at::kFloat);
    return {torch::ones({channels}, o), torch::zeros({channels}, o)};
  }
  return {weight.detach().to(at::kFloat).contiguous(), bias.detach().to(at::kFloat).contiguous()};
}

class GroupNormSilu : public torch::autograd::Function<GroupNormSilu> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, int64_t groups, bool silu) {
    const auto in = x.detach();
    const auto [w, b] = fp32_affine(weight, bias, x.size(1), x);
    at::Tensor mean, rstd;
    auto y = norm_silu_kernel::forward(in, groups, w, b, silu, mean, rstd);
    ctx->save_for_backward({in, w, b, mean, rstd});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["silu"] = silu;
    ctx->saved_data["weight_type"] = static_cast<int64_t>(weight.scalar_type());
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto g = geometry_of(x, ctx->saved_data["groups"].toInt());
    const auto dy = grads[0].detach().to(x.scalar_type()).contiguous(format_of(g));
    auto dx = torch::empty_like(x, format_of(g));
    auto dw = torch::empty({g.n, g.c}, x.options().dtype(at::kFloat));
    auto db = torch::empty({g.n, g.c}, x.options().dtype(at::kFloat));
    const Params p{saved[1].data_ptr<float>(), saved[2].data_ptr<float>()};
    const Stats st{saved[3].data_ptr<float>(), saved[4].data_ptr<float>()};
    const bool silu = ctx->saved_data["silu"].toBool();
    if (g.channels_last)
      channels_last_backward(x.data_ptr(), dy.data_ptr(), p, g, silu, st, dx.data_ptr(), dw.data_ptr<float>(),
                             db.data_ptr<float>());
    else
      nchw_backward(x.data_ptr(), dy.data_ptr(), p, g, silu, st, dx.data_ptr(), dw.data_ptr<float>(),
                    db.data_ptr<float>());
    const auto& weight = ctx->saved_data["weight_type"];
    const auto type = static_cast<at::ScalarType>(weight.toInt());
    return {dx, dw.sum(0).to(type), db.sum(0).to(type), at::Tensor(), at::Tensor()};
  }
};

}  // namespace
}  // namespace norm_silu_kernel

namespace kernel = norm_silu_kernel;

bool group_norm_silu_cpu_applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!x.defined() || !x.device().is_cpu() || x.dim() != 4 || x.size(1) < 2) return false;
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16) return false;
  if (!x.is_contiguous() && !x.is_contiguous(at::MemoryFormat::ChannelsLast)) return false;
  return kernel::affine_fits(weight, x.size(1)) && kernel::affine_fits(bias, x.size(1)) &&
         weight.defined() == bias.defined();
}

at::Tensor group_norm_silu_cpu(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                               bool silu) {
  RECORD_FUNCTION("augment::group_norm_silu_cpu", std::vector<c10::IValue>({x}));
  if (!group_norm_silu_cpu_applies(x, weight, bias) || groups < 1 || x.size(1) % groups != 0) {
    auto z = torch::group_norm(x, groups, weight.defined() ? weight.to(x.scalar_type()) : weight,
                               bias.defined() ? bias.to(x.scalar_type()) : bias, kernel::kEps, true);
    return silu ? torch::silu(z) : z;
  }
  const bool records = torch::GradMode::is_enabled() &&
                       (x.requires_grad() || (weight.defined() && (weight.requires_grad() || bias.requires_grad())));
  if (records) {
    // Autograd functions take defined tensors only: without affine parameters, ones and zeros.
    const auto [w, b] = weight.defined() ? std::pair{weight, bias} : kernel::fp32_affine(weight, bias, x.size(1), x);
    return kernel::GroupNormSilu::apply(x, w, b, groups, silu);
  }
  const auto [w, b] = kernel::fp32_affine(weight, bias, x.size(1), x);
  at::Tensor mean, rstd;
  return kernel::forward(x, groups, w, b, silu, mean, rstd);
}

}  // namespace augment
