// The classifier's resumable training: after each epoch one file holds the weights, the best
// weights so far, the optimizer and where training stands; it is replaced atomically, so a kill at
// any moment leaves either the previous epoch's checkpoint or this one.
#pragma once

#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/classifier.h"
#include "models/classifier_training.h"

namespace augment {

class Reporter;

// Where training stands after an epoch: everything besides the tensors a resume needs. The
// per-epoch randomness derives from (seed, epoch), so the epoch number is the RNG state.
struct ClassifierTrainState {
  int epochs_done = 0;
  int best_epoch = 0;
  double best_score = -1;
  double best_loss = std::numeric_limits<double>::infinity();
  int bad_epochs = 0;
  bool finished = false;
  bool stopped_early = false;
  std::vector<EpochRecord> history;
};

void write_classifier_checkpoint(const std::filesystem::path& path, const std::string& key,
                                 const ClassifierTrainState& state, ClassifierNet& net, ClassifierNet& best,
                                 torch::optim::Optimizer& optimizer);
// Loads a checkpoint written with `key`; false (and a note) when there is none or it does not fit.
bool read_classifier_checkpoint(const std::filesystem::path& path, const std::string& key, ClassifierTrainState& state,
                                ClassifierNet& net, ClassifierNet& best, torch::optim::Optimizer& optimizer,
                                Reporter* reporter);

}  // namespace augment
