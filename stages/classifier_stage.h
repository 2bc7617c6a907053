// classifier: pretrain the auxiliary classifier on the cached real images, pick the best epoch on
// val, and freeze it for the `ac` loss, the sample filter and the class-aware scores.
#pragma once

#include <memory>

#include "models/classifier_options.h"
#include "pipeline/stage.h"

namespace augment {

std::unique_ptr<Stage> make_classifier_stage();

}  // namespace augment
