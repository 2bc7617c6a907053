#include "manifests/hdf5_chunks.h"

#include <algorithm>

namespace augment {

std::array<unsigned long long, 4> image_chunk_shape(std::int64_t count, int height, int width, int channels) {
  constexpr unsigned long long kMin = 10 * 1024, kMax = 1024 * 1024;
  const unsigned long long row = static_cast<unsigned long long>(width) * channels;
  const unsigned long long image = row * height;
  if (image > kMax) {
    const auto rows = std::max<unsigned long long>(1, kMax / row);
    return {1, std::min<unsigned long long>(rows, height), static_cast<unsigned long long>(width),
            static_cast<unsigned long long>(channels)};
  }
  unsigned long long k = (kMin + image - 1) / image;
  k = std::max<unsigned long long>(
      1, std::min<unsigned long long>(k, static_cast<unsigned long long>(std::max<std::int64_t>(count, 1))));
  return {k, static_cast<unsigned long long>(height), static_cast<unsigned long long>(width),
          static_cast<unsigned long long>(channels)};
}

std::uint32_t hdf5_fletcher32(const std::uint8_t* data, std::size_t n) {
  std::uint32_t sum1 = 0, sum2 = 0;
  std::size_t words = n / 2;
  while (words > 0) {
    // HDF5 folds after every 360 words (which keeps both sums below 2^32) and only adds in between:
    // sum1 += w_i; sum2 += sum1. Summed in closed form, the block has no serial dependency and the
    // compiler vectorizes it; the result is the same integer.
    const std::size_t m = std::min<std::size_t>(words, 360);
    std::uint32_t plain = 0, weighted = 0;
    for (std::size_t i = 0; i < m; ++i) {
      const std::uint32_t w = (static_cast<std::uint32_t>(data[2 * i]) << 8) | data[2 * i + 1];
      plain += w;
      weighted += static_cast<std::uint32_t>(m - i) * w;
    }
    sum2 += static_cast<std::uint32_t>(m) * sum1 + weighted;
    sum1 += plain;
    data += 2 * m;
    words -= m;
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  if (n % 2 != 0) {
    sum1 += static_cast<std::uint32_t>(data[0]) << 8;
    sum2 += sum1;
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  sum1 = (sum1 & 0xffff) + (sum1 >> 16);
  sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  return (sum2 << 16) | sum1;
}

}  // namespace augment
