#include "stages/cached_split.h"

namespace augment {

TensorSplit load_cached_split(const std::filesystem::path& h5) {
  CacheReader reader(h5);
  TensorSplit out;
  out.info = reader.info();
  const auto n = reader.size();
  const int r = out.info.resolution, c = out.info.channels;
  auto nhwc = torch::empty({n, r, r, c}, torch::kUInt8);
  out.labels = torch::empty({n}, torch::kInt64);
  reader.read(0, n, nhwc.data_ptr<std::uint8_t>(), out.labels.data_ptr<std::int64_t>(), nullptr);
  out.images = nhwc.permute({0, 3, 1, 2}).contiguous();  // [N, H, W, C] -> [N, C, H, W]
  return out;
}

}  // namespace augment
