// How the denoiser is told the class, by name, without LibTorch: none (unconditional), cbn
// (class-conditional norms), ac (a label plane and an auxiliary classifier loss), cfg (a class
// embedding with label dropout, for classifier-free guidance).
#pragma once

#include "pipeline/base/named_enum.h"

namespace augment {

enum class Conditioning { kNone, kCbn, kAc, kCfg, kLast = kCfg };
inline constexpr NameTable<Conditioning, 4> kConditioningNames{{{{Conditioning::kNone, "none"},
                                                                 {Conditioning::kCbn, "cbn"},
                                                                 {Conditioning::kAc, "ac"},
                                                                 {Conditioning::kCfg, "cfg"}}}};
static_assert(kConditioningNames.complete());
constexpr const auto& names_of(Conditioning) { return kConditioningNames; }

}  // namespace augment
