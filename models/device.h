// Choosing where and in which precision tensors live, once per stage.
#pragma once

#include <string>

#include <torch/torch.h>

namespace augment {

// "auto" picks CUDA when LibTorch has it, else CPU; "cuda:N" picks a GPU. Throws UserError(kConfig)
// when CUDA is asked for but not available, or the name is none of these.
torch::Device resolve_device(const std::string& name);

// "auto": bf16 on CUDA, fp32 on the CPU (whatever its instructions: see the definition).
torch::ScalarType resolve_precision(const std::string& name, const torch::Device& device);

// True when this CPU has AMX-BF16 or AVX512-BF16 (read from /proc/cpuinfo): where --precision bf16
// runs natively instead of emulated.
bool cpu_has_fast_bf16();

std::string describe(const torch::Device& device, torch::ScalarType precision);

}  // namespace augment
