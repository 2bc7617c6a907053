// evaluate: how good are the synthetic images and do they help? Scores in the frozen classifier's
// feature space, downstream utility of fresh classifiers, pictures, and an offline HTML report in
// work/evaluate/report/.
#pragma once

#include <cstdint>
#include <memory>

#include "pipeline/base/config.h"
#include "pipeline/stage.h"

namespace augment {

struct EvaluateOptions {
  static constexpr const char* kGroup = "evaluate";
  std::int64_t seeds = 3;              // downstream classifiers per variant (real / augmented / synthetic); 0: skip
  std::int64_t downstream_epochs = 0;  // 0: classifier.epochs
  std::int64_t neighbours = 3;         // k of the k-NN manifolds of precision and recall
  std::int64_t tsne_points = 2000;     // most points in the t-SNE maps (half real, half synthetic)
  double perplexity = 30;
  std::int64_t tsne_iterations = 1000;
  std::int64_t grid = 8;  // the per-class sample grids are grid x grid images
  static void bind(OptionBinder<EvaluateOptions>& b);
};

std::unique_ptr<Stage> make_evaluate_stage();

}  // namespace augment
