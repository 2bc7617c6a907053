// The `classifier.*` options: the classifier recipe (models/classifier_recipe.h) as the command
// line and INI files set it.
#pragma once

#include "models/classifier_recipe.h"
#include "pipeline/base/config.h"

namespace augment {

struct ClassifierOptions : ClassifierRecipe {
  static constexpr const char* kGroup = "classifier";
  static void bind(OptionBinder<ClassifierOptions>& b);
};

}  // namespace augment
