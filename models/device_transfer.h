// Moving a batch from host to device memory in one transfer.
#pragma once

#include <vector>

#include <torch/torch.h>

namespace augment {

// The tensors of one batch on `device`, as a single host-to-device copy: on CUDA they are packed
// into one pinned host buffer (the caching host allocator reuses it), copied without blocking the
// host, and handed back as views of the one device buffer. Each keeps its dtype and shape and is
// contiguous. On the CPU they are returned as they are, unless `force_pack` asks for the packed
// path (tests use that to check the packing on a machine without a GPU).
std::vector<torch::Tensor> to_device_once(const std::vector<torch::Tensor>& host, const torch::Device& device,
                                          bool force_pack = false);

}  // namespace augment
