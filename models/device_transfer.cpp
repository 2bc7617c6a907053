#include "models/device_transfer.h"

#include <cstring>
#include <stdexcept>

namespace augment {
namespace {

// Every tensor starts on a 64-byte boundary of the packed buffer, so its dtype view is aligned.
constexpr std::int64_t kAlign = 64;

std::int64_t aligned(std::int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

}  // namespace

std::vector<torch::Tensor> to_device_once(const std::vector<torch::Tensor>& host, const torch::Device& device,
                                          bool force_pack) {
  if (!device.is_cuda() && !force_pack) return host;
  std::vector<torch::Tensor> parts;
  std::vector<std::int64_t> offsets;
  parts.reserve(host.size());
  std::int64_t total = 0;
  for (const auto& t : host) {
    if (!t.device().is_cpu()) throw std::invalid_argument("to_device_once: every tensor must be on the host");
    parts.push_back(t.contiguous());
    offsets.push_back(total);
    total += aligned(static_cast<std::int64_t>(t.numel() * t.element_size()));
  }
  auto staging = torch::empty({std::max<std::int64_t>(total, 1)},
                              torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(device.is_cuda()));
  auto* base = staging.data_ptr<std::uint8_t>();
  for (std::size_t i = 0; i < parts.size(); ++i) {
    std::memcpy(base + offsets[i], parts[i].data_ptr(),
                static_cast<std::size_t>(parts[i].numel() * parts[i].element_size()));
  }
  // non_blocking from pinned memory: the host goes on while the copy runs; kernels queued later on
  // the same stream see the data.
  auto on_device = device.is_cuda() ? staging.to(device, /*non_blocking=*/true) : staging;
  std::vector<torch::Tensor> out;
  out.reserve(parts.size());
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const auto bytes = static_cast<std::int64_t>(parts[i].numel() * parts[i].element_size());
    out.push_back(
        on_device.slice(0, offsets[i], offsets[i] + bytes).view(parts[i].scalar_type()).view(parts[i].sizes()));
  }
  return out;
}

}  // namespace augment
