// Randomness that gives the same result on every platform and standard library: the standard
// distributions and std::shuffle are implementation-defined, so splits would differ between
// machines. Seeds derive from (run seed, purpose) so adding a class does not reshuffle others.
#pragma once

#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

#include "pipeline/hash.h"

namespace augment {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}
  Rng(std::uint64_t seed, std::string_view purpose) : engine_(hash64(purpose, seed)) {}

  std::uint64_t next() { return engine_(); }
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
