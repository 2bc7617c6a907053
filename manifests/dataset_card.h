// OUTPUT/dataset.json (also kept as WORK/emit/dataset.json): what an augmented dataset holds,
// class by class, how its synthetic images were made, and the evaluation figures behind it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/sample_plan.h"
#include "manifests/sample_store.h"

namespace augment {

// Images of one class before and after emit.
struct ClassTally {
  std::int64_t real_train = 0;  // real training images of the subsample
  std::int64_t real_in = 0;     // of those, in the output (0 with emit.real = none)
  std::int64_t synthetic = 0;
  std::int64_t val = 0, test = 0;
};

struct DatasetCardFacts {
  std::string name;  // the output folder's name
  std::vector<std::string> class_names, folders;
  std::vector<ClassTally> tally;  // per class
  const SamplePlan* plan = nullptr;
  const MergedSamples* merged = nullptr;
  std::string real_images;  // emit.real
  double synthetic_weight = 1.0;
  double min_confidence = 0.0;
  std::int64_t max_tries = 0;
  bool croissant = false;
  nlohmann::json evaluation;  // evaluate's metrics.json, or null
};

nlohmann::json dataset_card(const DatasetCardFacts& facts);

}  // namespace augment
