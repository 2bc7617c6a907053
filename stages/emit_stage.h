// emit: the augmented image folder --output DIR/<class>/{real_*,synthetic_*.png} with manifest.csv,
// metadata.jsonl (for `datasets.load_dataset("imagefolder", data_dir=DIR)`) and dataset.json.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "pipeline/base/config.h"
#include "pipeline/stage.h"
#include "stages/output_folder.h"

namespace augment {

struct EmitOptions {
  static constexpr const char* kGroup = "emit";
  std::string real = "link";      // link | copy | none: how the real train images enter the folder
  double synthetic_weight = 1.0;  // `weight` column of synthetic rows (real rows: 1)
  bool croissant = true;          // croissant.json with every file's SHA-256
  static void bind(OptionBinder<EmitOptions>& b);
};

// The folder a class's images go to: the class name, with '/' (and the names "." and "..")
// made safe; everything else, spaces, quotes and non-ASCII included, is kept.
std::string class_folder_name(const std::string& class_name);

std::unique_ptr<Stage> make_emit_stage();

}  // namespace augment
