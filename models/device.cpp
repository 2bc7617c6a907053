#include "models/device.h"

#include <cstdlib>
#include <fstream>

#include <fmt/format.h>

#include "pipeline/base/errors.h"

namespace augment {

torch::Device resolve_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (name == "cpu") return torch::Device(torch::kCPU);
  const bool cuda = name == "cuda" || (name.rfind("cuda:", 0) == 0 && name.size() > 5 && name.size() <= 8 &&
                                       name.find_first_not_of("0123456789", 5) == std::string::npos);
  if (cuda) {
    if (!torch::cuda::is_available()) {
      throw UserError(ExitCode::kConfig,
                      fmt::format("device {}: this build of LibTorch sees no CUDA GPU; use cpu or auto", name));
    }
    const int index = name == "cuda" ? 0 : std::stoi(name.substr(5));
    if (index < 0 || index >= static_cast<int>(torch::cuda::device_count())) {
      throw UserError(ExitCode::kConfig,
                      fmt::format("device {}: there are {} CUDA devices", name, torch::cuda::device_count()));
    }
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw UserError(ExitCode::kConfig, fmt::format("device {}: accepted values: auto, cpu, cuda, cuda:N", name));
}

bool cpu_has_fast_bf16() {
  static const bool has = [] {
    // For tests and support: AUGMENT_ASSUME_CPU_BF16=1 (or 0) stands in for the CPU's flags, so
    // what augment says about bf16 on such a machine can be checked on any machine.
    if (const char* assume = std::getenv("AUGMENT_ASSUME_CPU_BF16"); assume && *assume)
      return std::string(assume) != "0";
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("flags", 0) == 0) {
        return line.find(" amx_bf16") != std::string::npos || line.find(" avx512_bf16") != std::string::npos;
      }
    }
    return false;
  }();
  return has;
}

torch::ScalarType resolve_precision(const std::string& name, const torch::Device& device) {
  if (name == "fp32") return torch::kFloat32;
  if (name == "bf16") return torch::kBFloat16;
  // Where a CPU's bf16 instructions pay is a stage's choice (stages/stage_device.h).
  if (name == "auto") return device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  throw UserError(ExitCode::kConfig, fmt::format("precision {}: accepted values: auto, fp32, bf16", name));
}

bool channels_last_pays(const torch::Device& device, int base_channels) {
  return device.is_cuda() || base_channels >= 64;
}

std::string describe(const torch::Device& device, torch::ScalarType precision) {
  return fmt::format("{} {}", device.str(), precision == torch::kBFloat16 ? "bf16" : "fp32");
}

}  // namespace augment
