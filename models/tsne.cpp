#include "models/tsne.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "pipeline/base/rng.h"

namespace augment {

namespace {

constexpr double kPi = 3.14159265358979323846;

torch::Tensor squared_distances(const torch::Tensor& x) {
  const auto norms = x.pow(2).sum(1);
  return (norms.unsqueeze(1) + norms.unsqueeze(0) - 2.0 * x.mm(x.t())).clamp_min_(0);
}

// Projection on the top `dims` principal axes, with each axis's sign fixed (largest coordinate
// positive) so the result does not depend on the eigensolver's choice of sign.
torch::Tensor principal_components(const torch::Tensor& centred, std::int64_t dims) {
  const auto cov = centred.t().mm(centred);
  auto [values, vectors] = at::linalg_eigh(cov, "L");  // ascending
  auto top = vectors.slice(1, vectors.size(1) - dims, vectors.size(1)).flip({1});
  const auto pivot = top.abs().argmax(0);
  const auto signs = torch::where(top.gather(0, pivot.unsqueeze(0)) < 0, -1.0, 1.0);
  return centred.mm(top * signs);
}

// Conditional affinities p(j|i) with one Gaussian width per row found by bisection so that each
// row's perplexity is `perplexity`; all rows are searched at once.
torch::Tensor conditional_affinities(const torch::Tensor& d2, double perplexity) {
  const auto n = d2.size(0);
  const auto eye = torch::eye(n, d2.options().dtype(torch::kBool));
  // Distances relative to each row's nearest neighbour keep exp() from underflowing everywhere.
  auto d = d2.masked_fill(eye, std::numeric_limits<double>::infinity());
  d = d - std::get<0>(d.min(1, true));
  const double target = std::log(perplexity);
  auto beta = torch::ones({n, 1}, d2.options());
  auto lo = torch::zeros({n, 1}, d2.options());
  auto hi = torch::full({n, 1}, std::numeric_limits<double>::infinity(), d2.options());
  torch::Tensor p;
  for (int it = 0; it < 64; ++it) {
    p = torch::exp(-d * beta);  // 0 on the diagonal (inf distance)
    const auto z = p.sum(1, true);
    const auto entropy = z.log() + beta * (d.masked_fill(eye, 0) * p).sum(1, true) / z;
    // Entropy too high: the kernel is too wide, so beta must grow.
    const auto grow = entropy > target;
    lo = torch::where(grow, beta, lo);
    hi = torch::where(grow, hi, beta);
    beta = torch::where(torch::isinf(hi), beta * 2, (lo + hi) / 2);
    if ((entropy - target).abs().max().item<double>() < 1e-5) break;
  }
  return p / p.sum(1, true);
}

// Standard normal values from the project's portable generator (Box-Muller).
torch::Tensor normal_layout(std::int64_t n, std::uint64_t seed, double scale) {
  Rng rng(seed, "tsne/init");
  std::vector<double> v(static_cast<std::size_t>(2 * n));
  for (std::size_t i = 0; i < v.size(); i += 2) {
    const double u1 = (static_cast<double>(rng.next() >> 11) + 1.0) / 9007199254740993.0;  // (0, 1]
    const double u2 = static_cast<double>(rng.next() >> 11) / 9007199254740992.0;
    const double r = std::sqrt(-2.0 * std::log(u1));
    v[i] = scale * r * std::cos(2 * kPi * u2);
    v[i + 1] = scale * r * std::sin(2 * kPi * u2);
  }
  return torch::from_blob(v.data(), {n, 2}, torch::kFloat64).clone();
}

}  // namespace

torch::Tensor tsne(const torch::Tensor& points, const TsneOptions& o) {
  if (points.dim() != 2 || points.size(0) < 2) throw std::invalid_argument("tsne: [N, D] with N >= 2 expected");
  const auto n = points.size(0);
  auto x = points.to(torch::kCPU, torch::kFloat64).contiguous();
  x = x - x.mean(0, true);
  if (o.pca_dims > 0 && x.size(1) > o.pca_dims) x = principal_components(x, o.pca_dims);
  // Scale-free distances: the bisection starts from beta = 1 whatever the feature scale.
  const auto d2 = squared_distances(x);
  const double mean_d2 = d2.sum().item<double>() / static_cast<double>(n * (n - 1));
  const double perplexity = std::max(1.0, std::min(o.perplexity, (static_cast<double>(n) - 1.0) / 3.0));
  auto p = conditional_affinities(d2 / std::max(mean_d2, 1e-300), perplexity);
  p = ((p + p.t()) / (2.0 * static_cast<double>(n))).clamp_min(1e-12);

  const double lr =
      o.learning_rate > 0 ? o.learning_rate : std::max(static_cast<double>(n) / o.exaggeration / 4.0, 50.0);
  // The descent works on raw rows: each iteration is two passes over the N^2 pairs (the kernel's
  // normaliser, then the gradient), recomputing the kernel rather than storing N^2 temporaries.
  // Every row is summed by one thread in a fixed order, so the result does not depend on the
  // number of threads.
  p = p.to(torch::kFloat32).contiguous();
  auto y = normal_layout(n, o.seed, 1e-4).to(torch::kFloat32).contiguous();
  auto update = torch::zeros_like(y);
  auto gains = torch::ones_like(y);
  auto grad = torch::empty_like(y);
  std::vector<double> row_z(static_cast<std::size_t>(n));
  const float* pp = p.data_ptr<float>();
  for (std::int64_t it = 0; it < o.iterations; ++it) {
    const bool early = it < o.exaggeration_iterations;
    const double exaggeration = early ? o.exaggeration : 1.0;
    const float* yp = y.data_ptr<float>();
    float* gp = grad.data_ptr<float>();
    // Student-t kernel k_ij = 1 / (1 + |y_i - y_j|^2); z = sum over i != j.
    at::parallel_for(0, n, 64, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        const float xi = yp[2 * i], yi = yp[2 * i + 1];
        double zi = 0;
        for (std::int64_t j = 0; j < n; ++j) {
          if (j == i) continue;
          const float dx = xi - yp[2 * j], dy = yi - yp[2 * j + 1];
          zi += 1.0f / (1.0f + dx * dx + dy * dy);
        }
        row_z[static_cast<std::size_t>(i)] = zi;
      }
    });
    double z = 0;
    for (const double v : row_z) z += v;
    const double inv_z = 1.0 / z;
    // grad_i = 4 sum_j (p_ij - k_ij / z) k_ij (y_i - y_j)
    at::parallel_for(0, n, 64, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        const float xi = yp[2 * i], yi = yp[2 * i + 1];
        const float* prow = pp + i * n;
        double gx = 0, gy = 0;
        for (std::int64_t j = 0; j < n; ++j) {
          if (j == i) continue;
          const float dx = xi - yp[2 * j], dy = yi - yp[2 * j + 1];
          const double k = 1.0 / (1.0 + dx * dx + dy * dy);
          const double m = (exaggeration * prow[j] - k * inv_z) * k;
          gx += m * dx;
          gy += m * dy;
        }
        gp[2 * i] = static_cast<float>(4.0 * gx);
        gp[2 * i + 1] = static_cast<float>(4.0 * gy);
      }
    });
    // Adaptive gains (Jacobs 1988), as in the reference implementation.
    const auto same_sign = (grad > 0) == (update > 0);
    gains = torch::where(same_sign, gains * 0.8, gains + 0.2).clamp_min(0.01);
    update = (early ? 0.5 : 0.8) * update - lr * gains * grad;
    y = (y + update).contiguous();
    y = (y - y.mean(0, true)).contiguous();
  }
  return y;
}

double nearest_neighbour_agreement(const torch::Tensor& points, const torch::Tensor& labels) {
  const auto x = points.to(torch::kCPU, torch::kFloat64);
  const auto n = x.size(0);
  if (n < 2) return std::numeric_limits<double>::quiet_NaN();
  auto d = squared_distances(x);
  d.masked_fill_(torch::eye(n, d.options().dtype(torch::kBool)), std::numeric_limits<double>::infinity());
  const auto nearest = d.argmin(1);
  const auto l = labels.to(torch::kCPU, torch::kInt64);
  return (l.index_select(0, nearest) == l).to(torch::kFloat64).mean().item<double>();
}

}  // namespace augment
