#include "stages/stage_device.h"

#include <algorithm>
#include <thread>

#include "models/device.h"
#include "pipeline/base/errors.h"

namespace augment {

torch::Device stage_device(const std::string& option) {
  try {
    return resolve_device(option);
  } catch (const UserError& e) {
    throw UserError(e.code(), std::string("--") + e.what());  // "device X: ..." -> "--device X: ..."
  }
}

torch::ScalarType stage_precision(const std::string& option, const torch::Device& device, CpuAuto cpu_auto) {
  try {
    if (option == "auto" && device.is_cpu() && cpu_auto == CpuAuto::kBf16WhereFast && cpu_has_fast_bf16())
      return torch::kBFloat16;
    return resolve_precision(option, device);
  } catch (const UserError& e) {
    throw UserError(e.code(), std::string("--") + e.what());
  }
}

std::string precision_reason(const std::string& requested, const torch::Device& device, torch::ScalarType chosen) {
  if (requested != "auto") return "as --precision " + requested + " asks";
  if (device.is_cuda()) return "--precision auto: bf16 on CUDA";
  if (chosen == torch::kBFloat16)
    return "--precision auto: this CPU has bf16 instructions (AVX512-BF16 or AMX), with which bf16 trained and "
           "sampled the CPU-sized denoiser faster than fp32 with quality within noise";
  return cpu_has_fast_bf16()
             ? "--precision auto: fp32 for this stage; on this CPU bf16 is chosen for the denoiser only"
             : "--precision auto: this CPU has no bf16 matrix instructions (AVX512-BF16 or AMX), where bf16 is "
               "emulated and many times slower, so fp32";
}

int use_stage_threads(int requested, int ranks_on_node) {
  const int threads =
      requested > 0 ? requested : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / ranks_on_node);
  torch::set_num_threads(threads);
  return threads;
}

}  // namespace augment
