// The training loop of the denoiser, separate from the stage wiring so tests can drive it on
// generated tensors: batches, loss (diffusion + the conditioning method's extras), AdamW with
// warm-up and clipping, EMA, rolling checkpoints with exact resume, and the loss curve.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/classifier.h"
#include "models/denoiser_file.h"
#include "models/diffusion.h"
#include "models/unet.h"
#include "stages/batch_order.h"
#include "stages/train_stage.h"

namespace augment {

class Distributed;
class GradientAverager;
class Reporter;

struct TrainData {
  torch::Tensor images;  // uint8 [N, C, H, W]
  torch::Tensor labels;  // int64 [N], 0..K-1
  std::vector<std::string> class_names;
};

struct TrainerEnv {
  std::filesystem::path dir;  // receives checkpoints/ and loss.csv
  torch::Device device = torch::kCPU;
  torch::ScalarType precision = torch::kFloat32;
  std::uint64_t seed = 0;
  ClassifierNet frozen_classifier{nullptr};  // required for ac with ac_classifier = frozen
  std::string classifier_fingerprint;        // content hash of its file: a retrained one restarts training
  // Data-parallel job (null: one process). Every rank trains on its slice of each global batch of
  // train.batch_size images; rank 0 alone writes checkpoints and loss.csv.
  Distributed* dist = nullptr;
  // For the plan's sampling estimate: the images `augment sample` will draw after training and
  // the denoiser passes each takes (0: no estimate), timed on batches of `sample_batch`.
  std::int64_t synthetic_images = 0;
  double passes_per_image = 0;
  std::int64_t sample_batch = 64;
  // And what `augment run` spends evaluating after sampling (0: no estimate; stages/evaluate_estimate.h).
  double evaluate_seconds = 0;
  std::int64_t evaluate_runs = 0;
};

struct TrainSummary {
  std::int64_t start_step = 0;  // where this run began (> 0 after a resume)
  std::int64_t end_step = 0;
  double last_loss = 0.0;              // mean over the last logging interval
  double images_per_second = 0.0;      // over all ranks
  double allreduce_ms_per_step = 0.0;  // waiting for gradient all-reduces after the backward pass
  bool time_budget_reached = false;
};

// Model and diffusion settings as the options describe them, for data of the given geometry.
// Throws UserError(kConfig) for inconsistent options.
UNetConfig unet_config_from(const TrainOptions& o, int channels, int resolution, int num_classes);
DiffusionConfig diffusion_config_from(const TrainOptions& o);

class Trainer {
 public:
  // Throws UserError for data that cannot be trained on (too few images for the batch size,
  // labels outside the classes, missing classifier for ac).
  Trainer(const TrainOptions& options, TrainData data, TrainerEnv env, Reporter& reporter);
  ~Trainer();

  // Resumes from the newest usable checkpoint, trains to the step or time budget, and writes a
  // final checkpoint. Throws UserError on a non-finite loss (keeping the last good checkpoint)
  // and StopRequested after checkpointing when a stop was requested.
  TrainSummary run();

  UNet& model() { return model_; }
  // Data-parallel: how many all-reduce buckets the gradients form (0 for one process).
  std::size_t gradient_buckets() const;
  UNet& ema() { return ema_; }
  DenoiserMeta meta() const;
  std::filesystem::path checkpoint_dir() const { return env_.dir / "checkpoints"; }
  std::filesystem::path loss_csv() const { return env_.dir / "loss.csv"; }

 private:
  double lr_at(std::int64_t step) const;
  // Prints the plan (and writes train/plan.json) from the measured seconds per step.
  void report_plan(double step_seconds, double budget_seconds);
  // Seconds the sampler will spend per denoiser pass of one image: timed no-grad batches of
  // the EMA model (it draws no random numbers, so training is unchanged).
  double seconds_per_denoised_image();
  // One optimizer step (all micro-batches); returns the mean loss.
  double train_step(std::int64_t step);
  void save(std::int64_t step);
  bool restore();
  bool is_root() const;
  // Data-parallel: every rank's stop request and training time, the same on all ranks after.
  int agree_on_stop(double& elapsed);
  // Data-parallel: throws when the ranks do not hold bit-identical weights.
  void verify_ranks_agree();

  TrainOptions o_;
  TrainData data_;
  TrainerEnv env_;
  Reporter& reporter_;
  UNetConfig model_config_;
  DiffusionConfig diffusion_config_;
  GaussianDiffusion diffusion_;
  UNet model_{nullptr}, ema_{nullptr};
  ClassifierNet classifier_{nullptr};
  bool joint_classifier_ = false;
  bool channels_last_ = false;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<BatchOrder> batches_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<GradientAverager> averager_;
  int rank_ = 0, world_ = 1;
  double allreduce_seconds_ = 0.0;    // of the current run
  bool discard_checkpoints_ = false;  // restore() found only unusable ones
  std::string key_;                   // what a compatible checkpoint must have been written under
  std::int64_t step_ = 0;
  double elapsed_ = 0.0;  // training seconds over all runs (for the time budget)
  // The loss curve's interval not yet logged: summed loss, seconds and steps (checkpointed).
  double interval_loss_ = 0.0, interval_seconds_ = 0.0;
  std::int64_t interval_steps_ = 0;
};

}  // namespace augment
