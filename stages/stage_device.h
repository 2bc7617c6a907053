// The device, precision and CPU threads a stage runs on, as the global --device, --precision and
// --threads options ask.
#pragma once

#include <string>

#include <torch/torch.h>

namespace augment {

// models/device.h's choices, with errors that name the option.
torch::Device stage_device(const std::string& option);
// What --precision auto picks on a CPU with bf16 instructions (AVX512-BF16 or AMX). bf16 is
// chosen only where it was measured faster with quality within noise (docs/measurements.md,
// 2026-12-04 and 2026-12-07): training and sampling the denoiser. The classifier, the judge of
// every evaluation figure, stays in fp32.
enum class CpuAuto { kFp32, kBf16WhereFast };
torch::ScalarType stage_precision(const std::string& option, const torch::Device& device,
                                  CpuAuto cpu_auto = CpuAuto::kFp32);
// Why `requested` ("auto", "fp32", "bf16") became `chosen` (stage_precision's answer) here, for the
// log line of a stage.
std::string precision_reason(const std::string& requested, const torch::Device& device, torch::ScalarType chosen);
// Sets LibTorch's intra-op threads to `requested` (--threads), or when 0 to all cores shared by
// the `ranks_on_node` processes of a job on this machine (at least 1), and returns the count.
// LibTorch sizes its pool from the physical cores cpuinfo reports, which was 1 of 2 on the VMs
// measured here.
int use_stage_threads(int requested, int ranks_on_node = 1);

}  // namespace augment
