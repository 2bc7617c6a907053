#include "models/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

namespace augment {

namespace {

constexpr std::int64_t kBlock = 1024;  // rows of a distance block: kBlock x N doubles at a time

torch::Tensor as_double(const torch::Tensor& t) { return t.to(torch::kCPU, torch::kFloat64).contiguous(); }

// Square root of a symmetric positive semi-definite matrix; rounding can make tiny eigenvalues
// negative, which are zero in exact arithmetic.
torch::Tensor psd_sqrt(const torch::Tensor& s) {
  auto [values, vectors] = at::linalg_eigh(0.5 * (s + s.t()), "L");
  return vectors.mm(torch::diag(values.clamp_min(0).sqrt())).mm(vectors.t());
}

// Squared Euclidean distances [rows of a, rows of b], clamped at zero against cancellation.
torch::Tensor squared_distances(const torch::Tensor& a, const torch::Tensor& b) {
  auto d = a.pow(2).sum(1, true) + b.pow(2).sum(1).unsqueeze(0) - 2.0 * a.mm(b.t());
  return d.clamp_min_(0);
}

// Squared distance from each row of `x` to its k-th nearest other row.
torch::Tensor kth_neighbour_radii(const torch::Tensor& x, int k) {
  const auto n = x.size(0);
  auto radii = torch::empty({n}, x.options());
  for (std::int64_t s = 0; s < n; s += kBlock) {
    const auto e = std::min(n, s + kBlock);
    auto d = squared_distances(x.slice(0, s, e), x);  // [b, n]
    // A row's own distance is 0 and comes first; duplicates of it count as neighbours.
    auto idx = torch::arange(s, e, torch::kInt64);
    d.index_put_({torch::arange(e - s, torch::kInt64), idx}, -1.0);
    radii.slice(0, s, e).copy_(std::get<0>(d.topk(k + 1, 1, /*largest=*/false, /*sorted=*/true)).select(1, k));
  }
  return radii;
}

// Share of rows of `queries` within the ball of at least one row of `points` (radii squared).
double share_inside(const torch::Tensor& queries, const torch::Tensor& points, const torch::Tensor& radii) {
  std::int64_t inside = 0;
  for (std::int64_t s = 0; s < queries.size(0); s += kBlock) {
    const auto e = std::min(queries.size(0), s + kBlock);
    const auto d = squared_distances(queries.slice(0, s, e), points);  // [b, m]
    inside += (d <= radii.unsqueeze(0)).any(1).sum().item<std::int64_t>();
  }
  return static_cast<double>(inside) / static_cast<double>(queries.size(0));
}

}  // namespace

double frechet_distance(const torch::Tensor& mu_a, const torch::Tensor& cov_a, const torch::Tensor& mu_b,
                        const torch::Tensor& cov_b) {
  const auto ma = as_double(mu_a), mb = as_double(mu_b), sa = as_double(cov_a), sb = as_double(cov_b);
  if (ma.dim() != 1 || !ma.sizes().equals(mb.sizes()) || sa.dim() != 2 || sa.size(0) != ma.size(0) ||
      !sa.sizes().equals(sb.sizes())) {
    throw std::invalid_argument("frechet_distance: means [F] and covariances [F, F] of one F expected");
  }
  // tr((S_a S_b)^(1/2)) = tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)): the latter is symmetric PSD, so a
  // symmetric eigendecomposition gives its eigenvalues, the same as those of S_a S_b.
  const auto root_a = psd_sqrt(sa);
  const auto inner = root_a.mm(sb).mm(root_a);
  const auto eigen = at::linalg_eigvalsh(0.5 * (inner + inner.t()), "L").clamp_min(0);
  const double cross = eigen.sqrt().sum().item<double>();
  const double mean_term = (ma - mb).pow(2).sum().item<double>();
  const double value = mean_term + sa.trace().item<double>() + sb.trace().item<double>() - 2.0 * cross;
  // Rounding may leave a tiny negative for identical distributions.
  return std::max(0.0, value);
}

namespace {

// Mean and unbiased covariance of the rows of x [N, F], in double precision.
std::pair<torch::Tensor, torch::Tensor> moments(const torch::Tensor& x) {
  const auto d = as_double(x);
  const auto mu = d.mean(0);
  const auto c = d - mu;
  return {mu, c.t().mm(c) / static_cast<double>(d.size(0) - 1)};
}

}  // namespace

double frechet_distance(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.dim() != 2 || b.dim() != 2 || a.size(1) != b.size(1))
    throw std::invalid_argument("frechet_distance: [N, F] and [M, F] expected");
  if (a.size(0) < 2 || b.size(0) < 2) return kNaN;
  const auto [mu_a, cov_a] = moments(a);
  const auto [mu_b, cov_b] = moments(b);
  return frechet_distance(mu_a, cov_a, mu_b, cov_b);
}

double frechet_distance(const torch::Tensor& a, const torch::Tensor& weights_a, const torch::Tensor& b) {
  if (a.dim() != 2 || b.dim() != 2 || a.size(1) != b.size(1) || weights_a.dim() != 1 ||
      weights_a.size(0) != a.size(0)) {
    throw std::invalid_argument("frechet_distance: [N, F], weights [N] and [M, F] expected");
  }
  if (a.size(0) < 2 || b.size(0) < 2) return kNaN;
  const auto w = as_double(weights_a);
  const double total = w.sum().item<double>();
  if (!(total > 0)) return kNaN;
  const auto p = w / total;
  const double effective = 1.0 - p.pow(2).sum().item<double>();
  if (!(effective > 0)) return kNaN;
  const auto d = as_double(a);
  const auto mu_a = (d * p.unsqueeze(1)).sum(0);
  const auto c = d - mu_a;
  const auto cov_a = (c * p.unsqueeze(1)).t().mm(c) / effective;
  const auto [mu_b, cov_b] = moments(b);
  return frechet_distance(mu_a, cov_a, mu_b, cov_b);
}

torch::Tensor class_mix_weights(const torch::Tensor& labels_a, const torch::Tensor& labels_b, int classes) {
  const auto ca = torch::bincount(labels_a.to(torch::kInt64), {}, classes).to(torch::kFloat64);
  auto share_b = torch::bincount(labels_b.to(torch::kInt64), {}, classes).to(torch::kFloat64);
  share_b = share_b * (ca > 0).to(torch::kFloat64);
  share_b = share_b / share_b.sum().clamp_min(1e-300);
  const auto per_row_class = share_b / ca.clamp_min(1.0);
  return per_row_class.index_select(0, labels_a.to(torch::kInt64));
}

double frechet_distance_at_mix(const torch::Tensor& a, const torch::Tensor& labels_a, const torch::Tensor& b,
                               const torch::Tensor& labels_b, const torch::Tensor& classes) {
  const auto keep_a = classes.index_select(0, labels_a.to(torch::kInt64)).nonzero().squeeze(1);
  const auto keep_b = classes.index_select(0, labels_b.to(torch::kInt64)).nonzero().squeeze(1);
  const auto la = labels_a.index_select(0, keep_a), lb = labels_b.index_select(0, keep_b);
  const auto w = class_mix_weights(la, lb, static_cast<int>(classes.size(0)));
  return frechet_distance(a.index_select(0, keep_a), w, b.index_select(0, keep_b));
}

double classifier_score(const torch::Tensor& logits) {
  if (logits.dim() != 2) throw std::invalid_argument("classifier_score: logits [N, K] expected");
  if (logits.size(0) == 0) return kNaN;
  const auto log_p = torch::log_softmax(as_double(logits), 1);  // [N, K]
  const auto p = log_p.exp();
  const auto log_marginal = p.mean(0).log().unsqueeze(0);  // [1, K]
  // 0 * log 0 terms are 0: p underflows to exactly 0 only where log_p is very negative.
  const auto kl = (p * (log_p - log_marginal)).nan_to_num(0.0).sum(1);
  return std::exp(kl.mean().item<double>());
}

PrecisionRecall knn_precision_recall(const torch::Tensor& real, const torch::Tensor& synthetic, int k) {
  if (real.dim() != 2 || synthetic.dim() != 2 || real.size(1) != synthetic.size(1)) {
    throw std::invalid_argument("knn_precision_recall: [N, F] and [M, F] expected");
  }
  if (k < 1 || real.size(0) <= k || synthetic.size(0) <= k) {
    throw std::invalid_argument("knn_precision_recall: each set needs more than k rows");
  }
  const auto r = as_double(real), s = as_double(synthetic);
  PrecisionRecall out;
  out.precision = share_inside(s, r, kth_neighbour_radii(r, k));
  out.recall = share_inside(r, s, kth_neighbour_radii(s, k));
  return out;
}

ConfusionMatrix conditional_confusion(const torch::Tensor& logits, const torch::Tensor& requested, int num_classes) {
  ConfusionMatrix m(static_cast<std::size_t>(num_classes));
  if (logits.size(0) == 0) return m;
  const auto predicted = logits.argmax(1).to(torch::kInt64).contiguous();
  const auto wanted = requested.to(torch::kInt64).contiguous();
  const auto* p = predicted.data_ptr<std::int64_t>();
  const auto* t = wanted.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < wanted.size(0); ++i) m.add(t[i], p[i]);
  return m;
}

}  // namespace augment
