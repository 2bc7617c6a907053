// The auxiliary classifier's recipe: architecture and training hyperparameters. Free of LibTorch
// so the option registry can declare it; the classifier stage and any later stage that trains a
// classifier on other data (downstream-utility evaluation) share it.
#pragma once

#include <cstdint>
#include <string>

#include "pipeline/config.h"

namespace augment {

struct ClassifierOptions {
  static constexpr const char* kGroup = "classifier";
  // Architecture (see models/classifier.h).
  std::int64_t width = 16;
  std::int64_t blocks = 1;
  std::string norm = "group";
  // Optimisation.
  std::int64_t epochs = 20;        // upper bound; early stopping may end sooner
  std::int64_t patience = 8;       // epochs without a better val score before stopping (0: never stop early)
  std::int64_t batch_size = 32;
  std::string optimizer = "adamw";  // adamw | sgd
  double lr = 0;                    // 0: 2e-3 for adamw, 0.05 for sgd
  double weight_decay = -1;         // -1: 0.05 for adamw (decoupled), 5e-4 for sgd
  double momentum = 0.9;            // sgd only (Nesterov)
  double warmup_epochs = 1;         // linear warm-up, then cosine decay to zero
  double label_smoothing = 0;
  // Data.
  bool flip = true;                 // random horizontal flips
  std::int64_t crop_pad = -1;       // random-crop padding in pixels (-1: resolution/8, 0: off)
  std::string balance = "loss";     // none | loss (class-weighted loss) | sampler (class-balanced batches)

  static void bind(OptionBinder<ClassifierOptions>& b);

  // The `auto` values resolved.
  double effective_lr() const;
  double effective_weight_decay() const;
  std::int64_t effective_crop_pad(std::int64_t resolution) const;
};

}  // namespace augment
