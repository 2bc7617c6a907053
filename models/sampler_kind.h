// The samplers by name, without LibTorch, for the options and files that name them.
#pragma once

#include "pipeline/base/named_enum.h"

namespace augment {

// DDPM ancestral, DDIM (with eta), DPM-Solver++ 2M.
enum class SamplerKind { kDdpm, kDdim, kDpmpp2m, kLast = kDpmpp2m };
inline constexpr NameTable<SamplerKind, 3> kSamplerNames{
    {{{SamplerKind::kDdpm, "ddpm"}, {SamplerKind::kDdim, "ddim"}, {SamplerKind::kDpmpp2m, "dpmpp2m"}}}};
static_assert(kSamplerNames.complete());
constexpr const auto& names_of(SamplerKind) { return kSamplerNames; }

}  // namespace augment
