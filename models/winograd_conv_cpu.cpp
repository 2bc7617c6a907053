#include "models/winograd_conv_cpu.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/torch.h>

#include "models/cpu_gemm.h"
#include "models/torch_compat.h"

namespace augment {

namespace winograd {

constexpr int64_t kTile = 4;     // output tile side
constexpr int64_t kPoints = 36;  // 6×6 points of the transformed tile
// Tiles per block: a block's transformed input and products (36 × tiles × channels floats each,
// about 1 MB at 128 channels) stay near the core, and its 36 products are tall enough for the
// sgemm kernels; of 16 to 384 on a 2-core Zen 3, 32 to 64 denoised fastest. A fixed size, so the
// arithmetic does not depend on the thread count.
constexpr int64_t kBlockTiles = 64;

std::atomic<int>& enabled_flag() {
  static std::atomic<int> flag{[] {
    const char* v = std::getenv("AUGMENT_WINOGRAD");
    return v && std::string(v) == "0" ? 0 : 1;
  }()};
  return flag;
}

// Bᵀ z for six vectors z[0..5] of n floats, into out[0..5]:
//   [4  0 -5  0 1 0]
//   [0 -4 -4  1 1 0]
//   [0  4 -4 -1 1 0]
//   [0 -2 -1  2 1 0]
//   [0  2 -1 -2 1 0]
//   [0  4  0 -5 0 1]
[[gnu::always_inline]] inline void input_transform(const float* const z[6], float* const out[6], int64_t n) {
  const float *z0 = z[0], *z1 = z[1], *z2 = z[2], *z3 = z[3], *z4 = z[4], *z5 = z[5];
  float *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3], *o4 = out[4], *o5 = out[5];
  // The inputs and outputs never overlap; without saying so, twelve pointers are too many for
  // the compiler's overlap checks and the loop stays scalar.
#pragma GCC ivdep
  for (int64_t c = 0; c < n; ++c) {
    const float a = z4[c] - 4.0f * z2[c], b = z3[c] - 4.0f * z1[c];
    const float d = z4[c] - z2[c], e = 2.0f * (z3[c] - z1[c]);
    o0[c] = 4.0f * z0[c] - 5.0f * z2[c] + z4[c];
    o1[c] = a + b;
    o2[c] = a - b;
    o3[c] = d + e;
    o4[c] = d - e;
    o5[c] = 4.0f * z1[c] - 5.0f * z3[c] + z5[c];
  }
}

// Aᵀ m for six vectors m[0..5] of n floats, into out[0..3]:
//   [1 1  1 1  1 0]
//   [0 1 -1 2 -2 0]
//   [0 1  1 4  4 0]
//   [0 1 -1 8 -8 1]
[[gnu::always_inline]] inline void output_transform(const float* const m[6], float* const out[4], int64_t n) {
  const float *m0 = m[0], *m1 = m[1], *m2 = m[2], *m3 = m[3], *m4 = m[4], *m5 = m[5];
  float *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3];
#pragma GCC ivdep
  for (int64_t c = 0; c < n; ++c) {
    const float s12 = m1[c] + m2[c], d12 = m1[c] - m2[c], s34 = m3[c] + m4[c], d34 = m3[c] - m4[c];
    o0[c] = m0[c] + s12 + s34;
    o1[c] = d12 + 2.0f * d34;
    o2[c] = s12 + 4.0f * s34;
    o3[c] = d12 + 8.0f * d34 + m5[c];
  }
}

struct Shape {
  int64_t n, in, out, h, w, tiles_h, tiles_w;
  int64_t tiles() const { return n * tiles_h * tiles_w; }
};

// Transforms the 6×6 input patch of one tile (channels-last x, zero outside the image) into
// v[point * v_stride + c], point = 6 * row + column of the transformed tile.
[[gnu::always_inline]] inline void transform_input_tile(const float* x, const Shape& s, int64_t image, int64_t ty,
                                                        int64_t tx, const float* zeros, float* v, int64_t v_stride,
                                                        float* scratch) {
  const float* patch[6][6];
  for (int64_t r = 0; r < 6; ++r) {
    const int64_t y = ty * kTile - 1 + r;
    for (int64_t q = 0; q < 6; ++q) {
      const int64_t xx = tx * kTile - 1 + q;
      patch[r][q] = (y >= 0 && y < s.h && xx >= 0 && xx < s.w) ? x + ((image * s.h + y) * s.w + xx) * s.in : zeros;
    }
  }
  // Along the rows of the patch (Bᵀ d), column by column, into scratch[6 * k + column]...
  for (int64_t q = 0; q < 6; ++q) {
    const float* z[6] = {patch[0][q], patch[1][q], patch[2][q], patch[3][q], patch[4][q], patch[5][q]};
    float* out[6];
    for (int64_t k = 0; k < 6; ++k) out[k] = scratch + (6 * k + q) * s.in;
    input_transform(z, out, s.in);
  }
  // ...then along its columns ((Bᵀ d) B), row by row, into v.
  for (int64_t k = 0; k < 6; ++k) {
    const float* z[6];
    float* out[6];
    for (int64_t q = 0; q < 6; ++q) {
      z[q] = scratch + (6 * k + q) * s.in;
      out[q] = v + (6 * k + q) * v_stride;
    }
    input_transform(z, out, s.in);
  }
}

// The inverse: Aᵀ M A + bias for one tile's products m[point * m_stride + c], written to the
// channels-last y where the 4×4 output tile lies inside the image.
[[gnu::always_inline]] inline void transform_output_tile(const float* m, int64_t m_stride, const Shape& s,
                                                         const float* bias, int64_t image, int64_t ty, int64_t tx,
                                                         float* y, float* scratch) {
  // Along the rows: scratch[6 * i + column] for the four output rows i...
  for (int64_t q = 0; q < 6; ++q) {
    const float* z[6];
    for (int64_t k = 0; k < 6; ++k) z[k] = m + (6 * k + q) * m_stride;
    float* out[4];
    for (int64_t i = 0; i < 4; ++i) out[i] = scratch + (6 * i + q) * s.out;
    output_transform(z, out, s.out);
  }
  // ...then along the columns, into a 4×4 tile of output vectors, then bias and copy out.
  float* tile = scratch + 24 * s.out;
  for (int64_t i = 0; i < 4; ++i) {
    const float* z[6];
    for (int64_t q = 0; q < 6; ++q) z[q] = scratch + (6 * i + q) * s.out;
    float* out[4];
    for (int64_t j = 0; j < 4; ++j) out[j] = tile + (4 * i + j) * s.out;
    output_transform(z, out, s.out);
  }
  for (int64_t i = 0; i < 4; ++i) {
    const int64_t yy = ty * kTile + i;
    if (yy >= s.h) break;
    for (int64_t j = 0; j < 4; ++j) {
      const int64_t xx = tx * kTile + j;
      if (xx >= s.w) break;
      const float* src = tile + (4 * i + j) * s.out;
      float* dst = y + ((image * s.h + yy) * s.w + xx) * s.out;
      if (bias) {
#pragma GCC ivdep
        for (int64_t c = 0; c < s.out; ++c) dst[c] = src[c] + bias[c];
      } else {
        std::memcpy(dst, src, static_cast<size_t>(s.out) * sizeof(float));
      }
    }
  }
}

// One thread's working memory for a block: its transformed input, products and tile scratch.
struct Buffers {
  std::vector<float> v, m, scratch, zeros;
  explicit Buffers(const Shape& s)
      : v(static_cast<size_t>(kPoints * kBlockTiles * s.in)),
        m(static_cast<size_t>(kPoints * kBlockTiles * s.out)),
        scratch(static_cast<size_t>(40 * std::max(s.in, s.out))),
        zeros(static_cast<size_t>(s.in), 0.0f) {}
};

// Block b of kBlockTiles tiles: input transform, the 36 products, output transform. Built for
// AVX2 and for the baseline, picked at load time by the CPU: the transforms are vector loops
// over channels, and the baseline x86-64 target vectorises them four floats at a time.
__attribute__((target_clones("avx2", "default"))) void run_block(const Shape& s, int64_t b, const float* x,
                                                                 const float* u, const float* bias, float* y,
                                                                 Buffers& buf) {
  const int64_t first = b * kBlockTiles, count = std::min(kBlockTiles, s.tiles() - first);
  const int64_t per_image = s.tiles_h * s.tiles_w;
  struct Place {
    int64_t image, ty, tx;
  };
  auto place = [&](int64_t t) {
    const int64_t tile = first + t, in_image = tile % per_image;
    return Place{tile / per_image, in_image / s.tiles_w, in_image % s.tiles_w};
  };
  for (int64_t t = 0; t < count; ++t) {
    const auto at = place(t);
    transform_input_tile(x, s, at.image, at.ty, at.tx, buf.zeros.data(), buf.v.data() + t * s.in, kBlockTiles * s.in,
                         buf.scratch.data());
  }
  for (int64_t p = 0; p < kPoints; ++p) {
    sgemm_rows(count, s.out, s.in, buf.v.data() + p * kBlockTiles * s.in, s.in, u + p * s.in * s.out, s.out,
               buf.m.data() + p * kBlockTiles * s.out, s.out);
  }
  for (int64_t t = 0; t < count; ++t) {
    const auto at = place(t);
    transform_output_tile(buf.m.data() + t * s.out, kBlockTiles * s.out, s, bias, at.image, at.ty, at.tx, y,
                          buf.scratch.data());
  }
}

// G (a, b, c)ᵀ for G, 6×3, of F(4×4, 3×3) with the points 0, ±1, ±2 (and ∞).
void g_times(double a, double b, double c, double out[6]) {
  out[0] = a / 4;
  out[1] = -(a + b + c) / 6;
  out[2] = -(a - b + c) / 6;
  out[3] = a / 24 + b / 12 + c / 6;
  out[4] = a / 24 - b / 12 + c / 6;
  out[5] = c;
}

// A convolution the kernel computes: CPU fp32 outside autocast, 3×3, enough channels.
bool fits(const at::Tensor& x, const at::Tensor& weight) {
  if (!x.defined() || !weight.defined()) return false;
  if (!x.device().is_cpu() || !weight.device().is_cpu()) return false;
  if (x.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat) return false;
  if (x.dim() != 4 || weight.dim() != 4 || weight.size(2) != 3 || weight.size(3) != 3) return false;
  if (x.size(1) != weight.size(1) || x.size(1) < 8 || weight.size(0) < 8) return false;
  return !compat::autocast_enabled(false);
}

}  // namespace winograd

bool winograd_enabled() { return winograd::enabled_flag().load() != 0; }

void set_winograd_enabled(bool enabled) { winograd::enabled_flag().store(enabled ? 1 : 0); }

bool winograd_trains() {
  static const bool yes = [] {
    const char* v = std::getenv("AUGMENT_WINOGRAD_TRAIN");
    return !(v && std::string(v) == "0");
  }();
  return yes && winograd_enabled();
}

bool winograd_applies(const at::Tensor& x, const at::Tensor& weight) {
  if (!winograd_enabled() || !winograd::fits(x, weight)) return false;
  return !(torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad()));
}

at::Tensor winograd_weights(const at::Tensor& weight, bool backward_data) {
  torch::NoGradGuard no_grad;
  const auto w = weight.detach().to(torch::kCPU, torch::kFloat32).contiguous();  // [out, in, 3, 3]
  const int64_t outs = w.size(0), ins = w.size(1);
  // For the input gradient the roles swap: in-channels of dy are the layer's outputs, and the
  // kernel is turned by 180°.
  const int64_t rows = backward_data ? outs : ins, cols = backward_data ? ins : outs;
  auto u = torch::empty({winograd::kPoints, rows, cols}, w.options());
  const float* wp = w.data_ptr<float>();
  float* up = u.data_ptr<float>();
  at::parallel_for(0, outs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      for (int64_t i = 0; i < ins; ++i) {
        const float* k = wp + (o * ins + i) * 9;
        double g[3][3];
        for (int a = 0; a < 3; ++a)
          for (int c = 0; c < 3; ++c) g[a][c] = backward_data ? k[(2 - a) * 3 + (2 - c)] : k[a * 3 + c];
        // G g Gᵀ: G down the columns of g, then along the rows of the result.
        double t[6][3], col[6];
        for (int c = 0; c < 3; ++c) {
          winograd::g_times(g[0][c], g[1][c], g[2][c], col);
          for (int r = 0; r < 6; ++r) t[r][c] = col[r];
        }
        const int64_t at = backward_data ? o * cols + i : i * cols + o;
        for (int r = 0; r < 6; ++r) {
          double v[6];
          winograd::g_times(t[r][0], t[r][1], t[r][2], v);
          for (int q = 0; q < 6; ++q) up[(r * 6 + q) * rows * cols + at] = static_cast<float>(v[q]);
        }
      }
    }
  });
  return u;
}

at::Tensor conv3x3_winograd(const at::Tensor& x_in, const at::Tensor& u_in, const at::Tensor& bias_in) {
  using namespace winograd;
  RECORD_FUNCTION("augment::conv3x3_winograd", std::vector<c10::IValue>({x_in}));
  torch::NoGradGuard no_grad;
  const auto x = x_in.contiguous(at::MemoryFormat::ChannelsLast);
  const auto u = u_in.contiguous();
  const auto bias = bias_in.defined() ? bias_in.to(torch::kFloat32).contiguous() : at::Tensor();
  Shape s{x.size(0), x.size(1), u.size(2), x.size(2), x.size(3), 0, 0};
  TORCH_CHECK(u.size(0) == kPoints && u.size(1) == s.in, "winograd weights do not fit the input's channels");
  s.tiles_h = (s.h + kTile - 1) / kTile;
  s.tiles_w = (s.w + kTile - 1) / kTile;
  auto y = torch::empty({s.n, s.out, s.h, s.w}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const int64_t tiles = s.tiles(), blocks = (tiles + kBlockTiles - 1) / kBlockTiles;
  const float* xp = x.data_ptr<float>();
  const float* up = u.data_ptr<float>();
  const float* bp = bias.defined() ? bias.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    Buffers buffers(s);
    for (int64_t b = begin; b < end; ++b) run_block(s, b, xp, up, bp, yp, buffers);
  });
  return x_in.suggest_memory_format() == at::MemoryFormat::ChannelsLast ? y : y.contiguous();
}

namespace winograd {

// Training: Winograd for the output and for the input gradient (the convolution of dy by the
// turned, transposed kernel), LibTorch's backward for the weight and bias gradients.
class TrainingConv : public torch::autograd::Function<TrainingConv> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias) {
    ctx->save_for_backward({x, weight});
    return conv3x3_winograd(x, winograd_weights(weight), bias);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto x = saved[0], w = saved[1];
    const auto dy = grads[0].contiguous(x.suggest_memory_format());
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) dx = conv3x3_winograd(dy, winograd_weights(w, /*backward_data=*/true), {});
    at::Tensor dw, db;
    if (ctx->needs_input_grad(1) || ctx->needs_input_grad(2)) {
      const std::vector<int64_t> one{1, 1}, zero{0, 0}, bias_sizes{w.size(0)};
      auto r = at::convolution_backward(dy, x, w, at::IntArrayRef(bias_sizes), one, one, one, false, zero, 1,
                                        {false, ctx->needs_input_grad(1), ctx->needs_input_grad(2)});
      dw = std::get<1>(r);
      db = std::get<2>(r);
    }
    return {dx, dw, db};
  }
};

}  // namespace winograd

at::Tensor Conv3x3Weights::forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const bool grad = torch::GradMode::is_enabled() &&
                    (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
  // Any gradient, the bias's included, keeps the call off the cached inference path.
  if (grad) {
    if (winograd_trains() && bias.defined() && winograd::fits(x, weight))
      return winograd::TrainingConv::apply(x, weight, bias);
    return torch::conv2d(x, weight, bias, {1, 1}, {1, 1}, {1, 1}, 1);
  }
  if (!winograd_applies(x, weight)) return torch::conv2d(x, weight, bias, {1, 1}, {1, 1}, {1, 1}, 1);
  if (!u_.defined() || data_ != weight.data_ptr() || version_ != weight._version()) {
    u_ = winograd_weights(weight);
    data_ = weight.data_ptr();
    version_ = weight._version();
  }
  return conv3x3_winograd(x, u_, bias);
}

}  // namespace augment
