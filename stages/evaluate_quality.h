// The scores evaluate gives the synthetic images against the held-out real ones, in the frozen
// classifier's feature space: conditional accuracy, Fréchet distance, classifier score,
// precision and recall, each beside the real train vs. held-out floor.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/classifier_training.h"
#include "stages/cached_split.h"
#include "stages/evaluate_downstream.h"
#include "stages/evaluate_stage.h"

namespace augment {

// A figure for metrics.json: the number, or null when it is not finite.
nlohmann::json finite_or_null(double v);

// The scores of the synthetic images against the held-out real ones (`test`), and of real train
// against them as the floor, in the classifier's feature space.
void add_quality_metrics(nlohmann::json& metrics, const EvaluateOptions& o, const std::vector<std::string>& names,
                         const TensorSplit& train, const TensorSplit& test, const SyntheticImages& synthetic,
                         const ClassifierOutputs& out_train, const ClassifierOutputs& out_test,
                         const ClassifierOutputs& out_syn, bool held_out, const std::string& reference);

}  // namespace augment
