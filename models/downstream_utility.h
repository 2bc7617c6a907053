// Does adding synthetic images help a classifier? Fresh classifiers with the classifier stage's
// recipe are trained on (a) the real train split, (b) real + synthetic, (c) synthetic only (the
// Classification Accuracy Score of Ravuri & Vinyals 2019), over several seeds, and scored on the
// real test split.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/classifier_recipe.h"
#include "models/classifier_training.h"
#include "models/downstream_variants.h"

namespace augment {

struct DownstreamData {
  LabeledImages real_train;
  LabeledImages synthetic;  // may be empty: then (b) and (c) are skipped
  LabeledImages val;        // real; picks each run's best epoch (may be empty: last epoch)
  LabeledImages test;       // real
};

struct DownstreamRun {
  std::string variant;  // real | augmented | synthetic
  std::uint64_t seed = 0;
  std::int64_t train_images = 0;
  int best_epoch = 0;
  double seconds = 0;
  ConfusionMatrix test;
  // "real" runs, when there are synthetic images: this classifier's verdict on them. Conditional
  // accuracy by a judge the generator never saw (an `ac` model is trained against the frozen
  // classifier, which then grades its own student).
  std::optional<ConfusionMatrix> synthetic;
};

// The variants that `data` allows, in report order: real (trained with the recipe's own way of
// meeting class imbalance), the real-only baselines, and with synthetic images augmented and
// synthetic. The baselines are the first things users try against imbalance, both with the
// recipe's crops and flips: a class-weighted loss ("real_loss") and class-balanced sampling
// ("real_sampler"), each added where the recipe itself does not use it.
std::vector<std::string> downstream_variants(const DownstreamData& data, ClassBalance recipe_balance);

// Trains one classifier on `variant`'s images with `seed` and scores it on the test split. `setup`
// carries the recipe, device, classes, reporter and stop hooks; its seed and label are replaced.
DownstreamRun train_downstream_run(const DownstreamData& data, const ClassifierTrainSetup& setup,
                                   const std::string& variant, std::uint64_t seed);

// A finished run as JSON and back (the stage keeps finished runs so a stopped evaluation resumes).
nlohmann::json downstream_run_to_json(const DownstreamRun& run);
DownstreamRun downstream_run_from_json(const nlohmann::json& j);

// {"seeds", "variants": {variant: {"train_images", "accuracy": {"mean", "std", "runs"}, "balanced_accuracy",
//  "per_class_recall": {class: {"mean", "std"}}, "smallest_classes_recall"}}, "difference":
//  {"augmented_minus_real": {...}, "synthetic_minus_real", "augmented_minus_real_sampler", ...},
//  "smallest_classes": [names], "strongest_baseline": variant, "independent_conditional_accuracy":
//  {"accuracy", "balanced_accuracy", "per_class_recall"} or null}
// with sample standard deviations; differences are paired by seed. With `train_counts` (real
// training images per class), "smallest_classes" names the two classes with the fewest and each
// variant's "smallest_classes_recall" is the mean recall over them (mean and std over seeds);
// "strongest_baseline" is the real-only variant with the highest mean balanced accuracy.
nlohmann::json downstream_to_json(const std::vector<DownstreamRun>& runs, const std::vector<std::string>& class_names,
                                  const std::vector<std::int64_t>& train_counts = {});

struct MeanStd {
  double mean = 0;
  double std = 0;  // sample standard deviation; 0 for a single value
};
MeanStd mean_std(const std::vector<double>& values);

}  // namespace augment
