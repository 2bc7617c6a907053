// evaluate's downstream utility: classifiers trained on real images alone (plain, class-weighted,
// class-balanced) and on real + synthetic, each over several seeds, scored on the real test split.
// Finished runs are journaled, so a stopped evaluation trains only what is missing.
#pragma once

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "manifests/sample_store.h"
#include "stages/cached_split.h"
#include "stages/evaluate_stage.h"

namespace augment {

class Context;

// The synthetic images of the sample store, as tensors, with the journals they came from.
struct SyntheticImages {
  torch::Tensor images;  // uint8 [M, C, H, W]
  torch::Tensor labels;  // int64 [M]
  MergedSamples merged;
};
// Throws UserError when the samples were made for other classes or another geometry than `info`.
SyntheticImages read_synthetic(const Context& ctx, const CacheInfo& info);

nlohmann::json evaluate_downstream(Context& ctx, const EvaluateOptions& o, const TensorSplit& train,
                                   const TensorSplit& val, const TensorSplit& test, const SyntheticImages& synthetic,
                                   const torch::Device& device, torch::ScalarType precision);

}  // namespace augment
