// Training and scoring the classifier on labelled image tensors: the recipe of the classifier
// stage, reusable on other data (e.g. real + synthetic images for downstream utility).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/classification_metrics.h"
#include "models/classifier.h"
#include "models/classifier_recipe.h"

namespace augment {

class Reporter;

// Images NCHW, either uint8 pixels (0..255, converted batch by batch, 4x less memory) or float
// already in [-1, 1]; labels int64 [N] in 0..num_classes-1.
struct LabeledImages {
  torch::Tensor images;
  torch::Tensor labels;
  std::int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

struct EpochRecord {
  int epoch = 0;  // 1-based
  double lr = 0;  // at the end of the epoch
  double train_loss = 0;
  double train_accuracy = 0;  // on the augmented batches, in training mode
  double val_loss = 0;        // NaN without a val split
  double val_accuracy = 0;
  double val_balanced_accuracy = 0;
  double train_seconds = 0;
  std::int64_t train_images = 0;
  bool best = false;
};

struct ClassifierTrainSetup {
  ClassifierRecipe options;
  std::uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  torch::ScalarType precision = torch::kFloat32;
  std::vector<std::string> class_names;
  Reporter* reporter = nullptr;  // progress lines; nullptr: silent
  std::string label = "classifier";
  // When set, a checkpoint (model, best model, optimizer, epoch) is written atomically after every
  // epoch, and a checkpoint with the same key is resumed. The key must change whenever the
  // data or options do.
  std::filesystem::path checkpoint;
  std::string checkpoint_key;
  // Called after each training step and after each epoch's checkpoint: the place to honour stop
  // requests (throwing ends training; the last checkpoint stays for a resume).
  std::function<void()> between_steps;
  std::function<void(const EpochRecord&)> after_epoch;
};

struct ClassifierTrainResult {
  ClassifierNet net{nullptr};  // weights of the best epoch, eval mode, on setup.device
  int best_epoch = 0;
  int epochs_run = 0;
  int resumed_after_epoch = 0;  // 0: started fresh
  bool stopped_early = false;
  std::vector<EpochRecord> history;
  double images_per_second() const;
};

// Architecture from the options and the data's shape.
ClassifierConfig classifier_config(const ClassifierRecipe& options, int channels, int resolution, int num_classes);

// Trains on `train`, choosing the epoch with the best balanced accuracy on `val` (ties: lower val
// loss). With an empty `val` the last epoch is kept and early stopping is off. Deterministic for
// a fixed seed on CPU with a fixed thread count, also across a resume.
ClassifierTrainResult train_classifier(const LabeledImages& train, const LabeledImages& val,
                                       const ClassifierTrainSetup& setup);

struct ClassifierScores {
  ConfusionMatrix confusion;
  double loss = 0;  // mean cross-entropy; NaN for an empty set
};

// Scores `net` on `data` (eval mode, fp32, no gradients).
ClassifierScores evaluate_classifier(ClassifierNet& net, const LabeledImages& data, const torch::Device& device,
                                     std::int64_t batch_size = 256);

// Logits for `images` (uint8 pixels or [-1, 1] floats) in batches, on the CPU.
torch::Tensor classifier_logits(ClassifierNet& net, const torch::Tensor& images, const torch::Device& device,
                                std::int64_t batch_size = 256);

struct ClassifierOutputs {
  torch::Tensor logits;    // float [N, K], CPU
  torch::Tensor features;  // float [N, F], CPU: the penultimate layer (pooled, before the head)
};
// Logits and penultimate features in one pass, in batches (eval mode, fp32, no gradients).
ClassifierOutputs classifier_outputs(ClassifierNet& net, const torch::Tensor& images, const torch::Device& device,
                                     std::int64_t batch_size = 256);

}  // namespace augment
