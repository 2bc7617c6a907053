// train: fit the class-conditional diffusion model on the cached train split, with rolling
// checkpoints so a killed or preempted run continues where it stopped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/conditioning.h"
#include "models/noise_schedule.h"
#include "pipeline/base/config.h"
#include "pipeline/stage.h"

namespace augment {

// What to run when the trained denoiser is missing or damaged (with_hints in pipeline/base/errors.h).
inline constexpr const char* kRunTrainFirst = "run `augment train` first";
inline constexpr const char* kRerunTrain = "rerun `augment train --force`";

struct TrainOptions {
  static constexpr const char* kGroup = "train";
  // The defaults are the measured CPU recipe (docs/recipe.md). Run through the CLI, the model's
  // size and the budget are sized by the data and the device instead (stages/run_defaults.h);
  // these values are what code that builds the struct itself (tests, tools) gets.
  std::string preset = "default";  // quick | default | thorough: scales the sized model and budget
  // budget
  std::int64_t steps = 2000;  // optimizer steps
  double minutes = 0;         // wall-clock budget over all resumed runs; 0: none
  std::int64_t batch_size = 32;
  std::int64_t accumulate = 1;  // micro-batches per optimizer step
  double class_power = 0.5;     // class c drawn in proportion to count_c^class_power (1: as in the data, 0: uniform)
  // optimizer
  double lr = 5e-4;
  std::int64_t warmup = 100;           // linear LR warm-up steps
  std::string lr_schedule = "cosine";  // constant | cosine (cosine decays to 0 at `steps`)
  double weight_decay = 0.0;
  double grad_clip = 1.0;  // max global gradient norm; 0: off
  double ema_decay = 0.999;
  std::int64_t ema_warmup = 10;  // decay ramps as (1+n)/(ema_warmup+n); 0: constant decay
  double min_snr = 5.0;          // min-SNR-gamma loss weighting; 0: plain MSE
  bool flip = true;              // random horizontal flips
  // conditioning
  Conditioning conditioning = Conditioning::kCfg;
  std::string cbn_norm = "batch";        // batch | group
  double cond_drop = 0.1;                // cfg: probability of dropping the label
  double ac_weight = 0.1;                // ac: weight of the classifier's cross-entropy
  std::string ac_classifier = "frozen";  // frozen | joint
  // model
  std::int64_t channels = 32;
  std::vector<int> channel_mult = {1, 2, 2};
  std::int64_t blocks = 1;
  std::vector<int> attention = {8};  // feature-map sides with self-attention
  std::int64_t heads = 2;
  double dropout = 0.0;
  // diffusion
  std::int64_t diffusion_steps = 1000;
  NoiseSchedule schedule = NoiseSchedule::kCosine;
  Prediction prediction = Prediction::kV;
  std::string memory_format = "auto";  // auto | channels_last | contiguous
  // bookkeeping (does not change the result)
  std::int64_t checkpoint_every = 250;
  double checkpoint_minutes = 10;  // also checkpoint when this long has passed since the last one
  std::int64_t keep_checkpoints = 2;
  std::int64_t log_every = 10;
  double bucket_mb = 4;  // data-parallel: gradient all-reduce bucket size
  static void bind(OptionBinder<TrainOptions>& b);
};

std::unique_ptr<Stage> make_train_stage();

}  // namespace augment
