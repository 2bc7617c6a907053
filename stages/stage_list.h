// The pipeline's stages in order, and the options they declare: the one place a stage is added.
#pragma once

#include <memory>
#include <vector>

#include "pipeline/base/config.h"
#include "pipeline/stage.h"

namespace augment {

std::vector<std::unique_ptr<Stage>> make_pipeline_stages();
// Declares the global options and every stage's options.
void declare_stage_options(OptionRegistry& registry);

}  // namespace augment
