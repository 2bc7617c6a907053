// classifier: pretrain the auxiliary classifier on the cached real images, pick the best epoch on
// val, and freeze it for the `ac` loss, the sample filter and the class-aware scores.
#pragma once

#include <memory>

#include "pipeline/stage.h"
#include "stages/classifier_options.h"

namespace augment {

std::unique_ptr<Stage> make_classifier_stage();

// What to run when the frozen classifier is missing or damaged (with_hints in pipeline/base/errors.h).
inline constexpr const char* kRunClassifierFirst = "run `augment classifier` first";
inline constexpr const char* kRerunClassifier = "rerun `augment classifier --force`";
// What to try when its training diverges.
inline constexpr const char* kClassifierDivergedHint = "lower --classifier.lr or use --precision fp32";

}  // namespace augment
