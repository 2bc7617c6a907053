// The learning-rate shape both trainings share after their warm-up: cosine decay to zero.
#pragma once

#include <cmath>

namespace augment {

// `peak` at progress 0, zero at progress 1 (the caller clamps progress to [0, 1]).
inline double cosine_decay(double peak, double progress) { return peak * 0.5 * (1.0 + std::cos(M_PI * progress)); }

}  // namespace augment
