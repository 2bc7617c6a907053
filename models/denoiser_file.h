// The trained denoiser as the later stages read it: EMA weights (`model.pt`) plus a JSON file
// (`model.json`) with everything needed to rebuild and use it: architecture, conditioning,
// diffusion schedule and prediction type, class names and image geometry.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json_fwd.hpp>

#include "models/diffusion.h"
#include "models/unet.h"

namespace augment {

struct DenoiserMeta {
  UNetConfig model;
  DiffusionConfig diffusion;
  std::vector<std::string> class_names;
  std::int64_t steps_trained = 0;
  std::int64_t parameters = 0;
  double cond_drop = 0.0;  // cfg: the label-drop rate the model was trained with
};

nlohmann::json to_json(const DenoiserMeta& meta);
DenoiserMeta denoiser_meta_from_json(const nlohmann::json& j);

// Writes `pt` (weights) and `json` (meta) atomically.
void save_denoiser(UNet& model, const DenoiserMeta& meta, const std::filesystem::path& pt,
                   const std::filesystem::path& json);

struct LoadedDenoiser {
  UNet model{nullptr};
  DenoiserMeta meta;
};

// Rebuilds the model from `json`, loads `pt` onto `device`, eval mode, no gradients. Throws
// UserError naming the command to run when the files are missing or damaged.
LoadedDenoiser load_denoiser(const std::filesystem::path& pt, const std::filesystem::path& json,
                             const torch::Device& device);

}  // namespace augment
