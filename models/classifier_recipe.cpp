#include "models/classifier_recipe.h"

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

}  // namespace augment
