// The sampler implementations, each in its own file; only make_sampler() (models/sampler.cpp)
// picks between them.
#pragma once

#include <memory>

#include "models/sampler.h"

namespace augment {

std::unique_ptr<Sampler> make_ddpm_sampler(const SamplerSettings& settings);
std::unique_ptr<Sampler> make_ddim_sampler(const SamplerSettings& settings);
std::unique_ptr<Sampler> make_dpmpp2m_sampler(const SamplerSettings& settings);

}  // namespace augment
