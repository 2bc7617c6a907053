// Randomness that gives the same result on every platform and standard library: the standard
// distributions and std::shuffle are implementation-defined, so splits would differ between
// machines. Seeds derive from (run seed, purpose) so adding a class does not reshuffle others.
#pragma once

#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

#include "pipeline/base/hash.h"

namespace augment {

// A well-mixed 64-bit seed from two numbers (splitmix64's finaliser over their combination), for
// streams keyed by position: (run seed, sample index), (sample seed, layer).
inline std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = a + 0x9E3779B97F4A7C15ULL * (b + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}
  Rng(std::uint64_t seed, std::string_view purpose) : engine_(hash64(purpose, seed)) {}

  std::uint64_t next() { return engine_(); }
  // Uniform in [0, 1): the top 53 bits, so every double of the grid is equally likely.
  double unit() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  // Uniform in [0, n) without modulo bias.
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    std::uint64_t x;
    do {
      x = engine_();
    } while (x >= limit);
    return x % n;
  }
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

 private:
  std::mt19937_64 engine_;
};

}  // namespace augment
