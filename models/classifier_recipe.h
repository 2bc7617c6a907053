// The auxiliary classifier's recipe: architecture and training hyperparameters, shared by the
// classifier stage and any later stage that trains a classifier on other data (downstream-utility
// evaluation). Free of LibTorch; the options that fill it are bound in stages/classifier_options.
#pragma once

#include <cstdint>
#include <string>

#include "pipeline/base/named_enum.h"

namespace augment {

// How training meets unbalanced classes: loss (weight the loss by inverse class frequency), sampler
// (class-balanced batches), none.
enum class ClassBalance { kLoss, kSampler, kNone, kLast = kNone };
inline constexpr NameTable<ClassBalance, 3> kClassBalanceNames{
    {{{ClassBalance::kLoss, "loss"}, {ClassBalance::kSampler, "sampler"}, {ClassBalance::kNone, "none"}}}};
static_assert(kClassBalanceNames.complete());
constexpr const auto& names_of(ClassBalance) { return kClassBalanceNames; }

struct ClassifierRecipe {
  // Architecture (see models/classifier.h).
  std::int64_t width = 16;
  std::int64_t blocks = 1;
  std::string norm = "group";
  // Optimisation.
  std::int64_t epochs = 20;   // upper bound; early stopping may end sooner
  std::int64_t patience = 8;  // epochs without a better val score before stopping (0: never stop early)
  // Fewest optimizer steps the `epochs` make: on a small train split an epoch passes over the images
  // several times instead (0: one pass per epoch whatever the size).
  std::int64_t min_steps = 1000;
  std::int64_t batch_size = 32;
  std::string optimizer = "adamw";  // adamw | sgd
  double lr = 0;                    // 0: 2e-3 for adamw, 0.05 for sgd
  double weight_decay = -1;         // -1: 0.05 for adamw (decoupled), 5e-4 for sgd
  double momentum = 0.9;            // sgd only (Nesterov)
  double warmup_epochs = 1;         // linear warm-up, then cosine decay to zero
  double label_smoothing = 0;
  // Data.
  bool flip = true;            // random horizontal flips
  std::int64_t crop_pad = -1;  // random-crop padding in pixels (-1: resolution/8, 0: off)
  ClassBalance balance = ClassBalance::kLoss;

  // The `auto` values resolved.
  double effective_lr() const;
  double effective_weight_decay() const;
  std::int64_t effective_crop_pad(std::int64_t resolution) const;
  // Passes over `images` training images per epoch, so that `epochs` epochs make min_steps steps.
  std::int64_t passes_per_epoch(std::int64_t images) const;
};

}  // namespace augment
