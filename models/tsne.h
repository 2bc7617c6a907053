// Exact t-SNE (van der Maaten & Hinton 2008) on LibTorch tensors: O(N^2) memory and time per
// iteration, meant for a few thousand points. Deterministic for a seed (and thread count).
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace augment {

struct TsneOptions {
  double perplexity = 30;  // effective neighbours per point; lowered to (N - 1) / 3 for small N
  std::int64_t iterations = 1000;
  std::uint64_t seed = 0;                      // initial layout
  double learning_rate = 0;                    // 0: max(N / exaggeration / 4, 50) (Belkina et al. 2019)
  double exaggeration = 12;                    // early exaggeration of the affinities...
  std::int64_t exaggeration_iterations = 250;  // ...for this many first iterations (momentum 0.5, then 0.8)
  std::int64_t pca_dims = 50;  // inputs with more columns are first projected on their top principal axes; 0: never
};

// [N, D] -> [N, 2] float embedding, centred. N >= 2.
torch::Tensor tsne(const torch::Tensor& points, const TsneOptions& options);

// Leave-one-out 1-nearest-neighbour accuracy of `labels` [N] on `points` [N, D]: how well the
// classes stay apart in a layout.
double nearest_neighbour_agreement(const torch::Tensor& points, const torch::Tensor& labels);

}  // namespace augment
