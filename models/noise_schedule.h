// The diffusion's choices by name, without LibTorch: the noise schedule and what the denoiser
// predicts.
#pragma once

#include "pipeline/base/named_enum.h"

namespace augment {

// linear: DDPM's betas; cosine: alpha_bar as cos^2 (Nichol & Dhariwal).
enum class NoiseSchedule { kLinear, kCosine, kLast = kCosine };
inline constexpr NameTable<NoiseSchedule, 2> kNoiseScheduleNames{
    {{{NoiseSchedule::kLinear, "linear"}, {NoiseSchedule::kCosine, "cosine"}}}};
static_assert(kNoiseScheduleNames.complete());
constexpr const auto& names_of(NoiseSchedule) { return kNoiseScheduleNames; }

// eps: the added noise; v: sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0 (Salimans & Ho).
enum class Prediction { kEps, kV, kLast = kV };
inline constexpr NameTable<Prediction, 2> kPredictionNames{{{{Prediction::kEps, "eps"}, {Prediction::kV, "v"}}}};
static_assert(kPredictionNames.complete());
constexpr const auto& names_of(Prediction) { return kPredictionNames; }

}  // namespace augment
