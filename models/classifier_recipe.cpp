#include "models/classifier_recipe.h"

#include <algorithm>

namespace augment {

double ClassifierRecipe::effective_lr() const {
  if (lr > 0) return lr;
  return optimizer == "sgd" ? 0.05 : 2e-3;
}

double ClassifierRecipe::effective_weight_decay() const {
  if (weight_decay >= 0) return weight_decay;
  return optimizer == "sgd" ? 5e-4 : 0.05;
}

std::int64_t ClassifierRecipe::effective_crop_pad(std::int64_t resolution) const {
  return crop_pad >= 0 ? crop_pad : resolution / 8;
}

std::int64_t ClassifierRecipe::passes_per_epoch(std::int64_t images) const {
  if (images <= 0 || min_steps <= 0 || epochs <= 0) return 1;
  const std::int64_t batch = std::max<std::int64_t>(1, std::min(batch_size, images));
  const std::int64_t steps = (images + batch - 1) / batch * epochs;
  return std::max<std::int64_t>(1, (min_steps + steps - 1) / steps);
}

}  // namespace augment
