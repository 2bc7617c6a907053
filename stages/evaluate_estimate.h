// How long the evaluate stage will take, told before training starts so the printed plan covers
// the whole run. The downstream-utility classifiers it trains dominate it (1,940 of its 2,065 s on
// the 64 px icon folder, docs/measurements.md), so it is their image visits at the rate the
// classifier stage measured on the same images.
#pragma once

#include <cstdint>

namespace augment {

class Context;
struct ClassifierRecipe;

struct EvaluateEstimate {
  std::int64_t runs = 0;    // downstream classifiers trained (variants x seeds)
  std::int64_t images = 0;  // images they and the scoring pass over, training and inference
  double seconds = 0;       // 0: not known
};

struct EvaluateCounts {
  std::int64_t train = 0, val = 0, test = 0, synthetic = 0;
};

// The estimate for these split sizes, `seeds` seeds (evaluate.seeds) and `epochs` per run, at
// `images_per_second`. Early stopping can only shorten it; every forward pass is counted at the
// training rate, which errs long.
EvaluateEstimate estimate_evaluate(const ClassifierRecipe& recipe, std::int64_t seeds, std::int64_t epochs,
                                   const EvaluateCounts& counts, double images_per_second);

// The same for this work dir: the cached splits, the evaluate and classifier options, and the rate
// in classifier/metrics.json. Zero seconds when the classifier stage has not run.
EvaluateEstimate estimate_evaluate(const Context& ctx, std::int64_t synthetic_images);

}  // namespace augment
