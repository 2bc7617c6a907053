// The names of the downstream-utility variants (models/downstream_utility), free of LibTorch so
// that the report and the stage summary list them in the same order as the metrics name them.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "models/classifier_recipe.h"

namespace augment {

// "real" is trained with the recipe's own class balancing; "real_<balance>" are the real-only
// baselines with another one (models/classifier_recipe.h names them).
inline constexpr std::string_view kBaselinePrefix = "real_";

// Every variant, in report order: real, the baselines, real + synthetic, synthetic only.
inline constexpr std::array<const char*, 5> kDownstreamVariantOrder = {"real", "real_loss", "real_sampler", "augmented",
                                                                       "synthetic"};

// Whether `variant` is a real-only run ("real" or one of the baselines).
inline bool is_real_only_variant(const std::string& variant) {
  return variant == "real" || variant.rfind(kBaselinePrefix, 0) == 0;
}

// The variants trained for a recipe balancing unbalanced classes by `recipe_balance`: real, the
// baselines with the other balancing, then (with synthetic images) augmented and synthetic.
std::vector<std::string> downstream_variant_names(ClassBalance recipe_balance, bool with_synthetic);

}  // namespace augment
