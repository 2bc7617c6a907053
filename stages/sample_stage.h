// sample: generate the synthetic images of the balance plan with the trained denoiser, one shard
// of them per invocation (--shard K/N or a SLURM array task), resumable per image.
#pragma once

#include <memory>

#include "pipeline/stage.h"
#include "stages/sample_options.h"

namespace augment {

std::unique_ptr<Stage> make_sample_stage();

}  // namespace augment
