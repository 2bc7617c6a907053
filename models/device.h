// Choosing where and in which precision tensors live, once per stage.
#pragma once

#include <string>

#include <torch/torch.h>

namespace augment {

// "auto" picks CUDA when LibTorch has it, else CPU; "cuda:N" picks a GPU. Throws UserError(kConfig)
// when CUDA is asked for but not available, or the name is none of these.
torch::Device resolve_device(const std::string& name);

// "auto": bf16 on CUDA, fp32 on the CPU (a stage may pick bf16 where the CPU has bf16 instructions).
torch::ScalarType resolve_precision(const std::string& name, const torch::Device& device);

// True when this CPU has AMX-BF16 or AVX512-BF16 (read from /proc/cpuinfo): where --precision bf16
// runs natively instead of emulated.
bool cpu_has_fast_bf16();

std::string describe(const torch::Device& device, torch::ScalarType precision);

// The denoiser's layout when train.memory_format is auto: channels-last on CUDA and, on the CPU,
// for wide models (64 base channels and up), where it was measured faster in fp32 and bf16; the
// CPU-sized models (24-48) ran as fast or faster in NCHW, in bf16 by 1.4x
// (docs/measurements.md, 2026-12-03 and 2026-12-04).
bool channels_last_pays(const torch::Device& device, int base_channels);

}  // namespace augment
