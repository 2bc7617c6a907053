// Scores of generated images in a classifier's feature space: Fréchet distance, the Inception-Score
// formula with another classifier, k-NN precision and recall, and conditional accuracy. All work on
// CPU tensors and compute in double precision.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "models/classification_metrics.h"

namespace augment {

// Fréchet distance between the Gaussians with these moments (means [F], covariances [F, F]):
// |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)).
double frechet_distance(const torch::Tensor& mu_a, const torch::Tensor& cov_a, const torch::Tensor& mu_b,
                        const torch::Tensor& cov_b);
// The same between Gaussians fitted to two feature sets [N, F] and [M, F] (unbiased covariances).
// NaN when a set has fewer than two rows.
double frechet_distance(const torch::Tensor& a, const torch::Tensor& b);
// The same with set a weighted per row (weights [N] >= 0, any scale; reliability-weighted
// unbiased covariance): with weights that give each class of a its share in b, the distance no
// longer counts a different class mix (a balance plan samples mostly the rare classes).
double frechet_distance(const torch::Tensor& a, const torch::Tensor& weights_a, const torch::Tensor& b);
// Row weights that give the classes of labels_a the shares they have in labels_b (int64 labels);
// classes missing from a are left out and the rest renormalised.
torch::Tensor class_mix_weights(const torch::Tensor& labels_a, const torch::Tensor& labels_b, int classes);
// The distance between a and b restricted to the classes marked in `classes` (bool [K]), with a
// weighted to b's class mix there: compares the images of these classes, not their proportions.
double frechet_distance_at_mix(const torch::Tensor& a, const torch::Tensor& labels_a, const torch::Tensor& b,
                               const torch::Tensor& labels_b, const torch::Tensor& classes);

// exp(mean over images of KL(p(y|x) || p(y))) from logits [N, K]: the Inception Score formula with
// the run's classifier. Between 1 (every image gets the same prediction) and K (confident and
// evenly spread over the classes). NaN for no images.
double classifier_score(const torch::Tensor& logits);

struct PrecisionRecall {
  double precision = 0;  // share of synthetic images inside the real images' k-NN manifold
  double recall = 0;     // share of real images inside the synthetic images' k-NN manifold
};
// Kynkäänniemi et al. 2019: each point of a set gets a ball reaching its k-th nearest neighbour in
// that set; a point is inside the other set's manifold when it lies in at least one of its balls.
// `real` [N, F] and `synthetic` [M, F] with N, M > k. Memory stays at a block of rows of distances.
PrecisionRecall knn_precision_recall(const torch::Tensor& real, const torch::Tensor& synthetic, int k);

// Rows: the class an image was generated for; columns: the class the classifier predicts
// (argmax of `logits` [N, K]). Its per-class recall is the conditional accuracy of each class.
ConfusionMatrix conditional_confusion(const torch::Tensor& logits, const torch::Tensor& requested, int num_classes);

}  // namespace augment
