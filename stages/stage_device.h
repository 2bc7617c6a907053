// The device and precision a stage runs on, as the global --device and --precision options ask.
#pragma once

#include <string>

#include <torch/torch.h>

namespace augment {

// models/device.h's choices, with errors that name the option.
torch::Device stage_device(const std::string& option);
torch::ScalarType stage_precision(const std::string& option, const torch::Device& device);
// Why `requested` ("auto", "fp32", "bf16") became `chosen` here, for the log line of a stage.
std::string precision_reason(const std::string& requested, const torch::Device& device, torch::ScalarType chosen);

}  // namespace augment
