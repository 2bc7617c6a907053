// subsample: choose classes, cap images per class, and split train/val/test per class.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "manifests/image_record.h"
#include "pipeline/base/config.h"
#include "pipeline/stage.h"

namespace augment {

struct SubsampleOptions {
  static constexpr const char* kGroup = "subsample";
  std::vector<std::string> classes;  // keep only these classes (names; quote names with commas)
  std::int64_t top_k = 0;            // keep the k classes with most images (0: all)
  std::int64_t min_per_class = 1;    // drop classes with fewer images
  std::int64_t max_per_class = 0;    // cap images per class (0: no cap)
  double val_fraction = 0.1;
  double test_fraction = 0.1;
  static void bind(OptionBinder<SubsampleOptions>& b);
};

// The selection and split itself, separate from files so tests can call it.
// Returns the chosen records with label and split set; `classes` receives the chosen class list.
std::vector<ImageRecord> select_and_split(const std::vector<ImageRecord>& index, const ClassList& scanned,
                                          const SubsampleOptions& options, std::uint64_t seed, ClassList& classes,
                                          std::vector<std::string>* notes = nullptr);

std::unique_ptr<Stage> make_subsample_stage();

}  // namespace augment
