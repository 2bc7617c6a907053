#include "stages/evaluate_estimate.h"

#include <nlohmann/json.hpp>

#include "manifests/image_cache.h"
#include "models/classifier_recipe.h"
#include "models/downstream_variants.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/context.h"
#include "pipeline/work_paths.h"
#include "stages/classifier_options.h"
#include "stages/evaluate_stage.h"

namespace augment {

EvaluateEstimate estimate_evaluate(const ClassifierRecipe& recipe, std::int64_t seeds, std::int64_t epochs,
                                   const EvaluateCounts& n, double images_per_second) {
  EvaluateEstimate e;
  // The scoring pass: the frozen classifier over real train, real test and the synthetic images.
  e.images = n.train + n.test + n.synthetic;
  // Downstream runs need a test split to score on (models/downstream_utility.h).
  if (seeds > 0 && n.test > 0 && n.train > 0) {
    auto visits = [&](std::int64_t images, bool judge) {
      // Training passes, validation after every epoch, the test score, and for the plain real run
      // (an independent judge) its verdict on the synthetic images.
      return epochs * recipe.passes_per_epoch(images) * images + epochs * n.val + n.test + (judge ? n.synthetic : 0);
    };
    const auto variants = downstream_variant_names(recipe.balance, n.synthetic > 0);
    std::int64_t per_seed = 0;
    for (const auto& v : variants) {
      const auto images = is_real_only_variant(v) ? n.train : v == "augmented" ? n.train + n.synthetic : n.synthetic;
      per_seed += visits(images, v == "real");
    }
    e.runs = static_cast<std::int64_t>(variants.size()) * seeds;
    e.images += per_seed * seeds;
  }
  e.seconds = images_per_second > 0 ? static_cast<double>(e.images) / images_per_second : 0.0;
  return e;
}

EvaluateEstimate estimate_evaluate(const Context& ctx, std::int64_t synthetic_images) {
  const auto metrics_path = ctx.path(work_file::kClassifierMetrics);
  double rate = 0;
  std::error_code ec;
  if (std::filesystem::is_regular_file(metrics_path, ec)) {
    try {
      rate = nlohmann::json::parse(read_text_file(metrics_path)).value("train_images_per_second", 0.0);
    } catch (const std::exception&) {
      rate = 0;  // advice only: an unreadable file gives no estimate
    }
  }
  EvaluateCounts n;
  n.synthetic = synthetic_images;
  auto count = [&](const char* rel) {
    const auto p = ctx.path(rel);
    return std::filesystem::is_regular_file(p, ec) ? CacheReader(p).size() : 0;
  };
  n.train = count(work_file::kCacheTrain);
  n.val = count(work_file::kCacheVal);
  n.test = count(work_file::kCacheTest);
  const auto o = ctx.options<EvaluateOptions>();
  const auto recipe = ctx.options<ClassifierOptions>();
  return estimate_evaluate(recipe, o.seeds, o.downstream_epochs > 0 ? o.downstream_epochs : recipe.epochs, n, rate);
}

}  // namespace augment
