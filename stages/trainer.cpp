#include "stages/trainer.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "manifests/loss_curve.h"
#include "models/autocast.h"
#include "models/checkpoint.h"
#include "models/device.h"
#include "models/device_transfer.h"
#include "models/distributed.h"
#include "models/ema.h"
#include "models/lr_schedule.h"
#include "models/pixel_range.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/base/report.h"
#include "pipeline/base/rng.h"
#include "pipeline/base/signals.h"
#include "stages/cached_split.h"
#include "stages/train_plan.h"

namespace augment {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

Trainer::Trainer(const TrainOptions& options, TrainData data, TrainerEnv env, Reporter& reporter)
    : o_(options),
      data_(std::move(data)),
      env_(std::move(env)),
      reporter_(reporter),
      model_config_(unet_config_from(o_, static_cast<int>(data_.images.size(1)), static_cast<int>(data_.images.size(2)),
                                     static_cast<int>(data_.class_names.size()))),
      diffusion_config_(diffusion_config_from(o_)),
      diffusion_(diffusion_config_) {
  const auto n = data_.images.size(0);
  if (env_.dist) {
    rank_ = env_.dist->rank();
    world_ = env_.dist->world_size();
  }
  if (n < o_.batch_size) {
    // A small dataset is what augment is for: train on batches of the whole split (split evenly
    // over the ranks) rather than refuse.
    const std::int64_t whole = n / world_ * world_;
    if (whole < 1) {
      throw UserError(
          ExitCode::kDataError,
          fmt::format("the train split has {} images, fewer than the {} ranks; add images or run on fewer ranks", n,
                      world_));
    }
    reporter_.warn(
        fmt::format("the train split has {} images, fewer than train.batch_size = {}: every batch is {} of them "
                    "(set --train.batch_size {} to silence this)",
                    n, o_.batch_size, whole, whole));
    o_.batch_size = whole;
  }
  if (env_.dist) {
    if (o_.batch_size % world_ != 0) {
      throw UserError(ExitCode::kConfig,
                      fmt::format("train.batch_size = {} is the global batch and must split evenly over the {} "
                                  "ranks; use a multiple of {}",
                                  o_.batch_size, world_, world_));
    }
  }
  if (data_.images.size(2) != data_.images.size(3))
    throw UserError(ExitCode::kDataError, "training images must be square");
  if (n > 0) {
    const auto lo = data_.labels.min().item<std::int64_t>(), hi = data_.labels.max().item<std::int64_t>();
    if (lo < 0 || hi >= static_cast<std::int64_t>(data_.class_names.size())) {
      throw UserError(ExitCode::kDataError,
                      fmt::format("labels {}..{} do not fit the {} classes", lo, hi, data_.class_names.size()));
    }
  }
  {
    const auto l = data_.labels.to(torch::kInt64).contiguous();
    batches_ = std::make_unique<BatchOrder>(
        env_.seed, std::vector<std::int64_t>(l.data_ptr<std::int64_t>(), l.data_ptr<std::int64_t>() + n),
        o_.class_power, o_.batch_size);
  }

  torch::manual_seed(env_.seed);
  model_ = UNet(model_config_);
  ema_ = UNet(model_config_);
  model_->to(env_.device);
  ema_->to(env_.device);
  const bool want_cl = o_.memory_format == "channels_last" ||
                       (o_.memory_format == "auto" && channels_last_pays(env_.device, model_config_.base_channels));
  channels_last_ = want_cl;
  if (channels_last_) model_->to_channels_last();
  ema_reset(*ema_, *model_);
  ema_->eval();

  params_ = model_->parameters();
  if (o_.conditioning == Conditioning::kAc) {
    joint_classifier_ = o_.ac_classifier == "joint";
    if (joint_classifier_) {
      // The research's first attempt: a fresh classifier learning on the denoiser's own
      // predictions, which lets the two co-adapt instead of the denoiser matching real data.
      ClassifierConfig cc;
      cc.channels = model_config_.in_channels;
      cc.resolution = model_config_.resolution;
      cc.num_classes = model_config_.num_classes;
      classifier_ = ClassifierNet(cc);
      classifier_->to(env_.device);
      for (auto& p : classifier_->parameters()) params_.push_back(p);
    } else {
      if (!env_.frozen_classifier) {
        throw UserError(ExitCode::kNoInput,
                        "train.conditioning = ac needs the frozen classifier; run `augment classifier` first (or set "
                        "--train.ac_classifier joint)");
      }
      classifier_ = env_.frozen_classifier;
      classifier_->eval();
      for (auto& p : classifier_->parameters()) p.set_requires_grad(false);
    }
  }
  if (env_.dist) {
    // Same seed, same initial weights on every rank already; the broadcast makes it a guarantee.
    std::vector<torch::Tensor> state = model_->parameters();
    for (auto& b : model_->buffers()) state.push_back(b);
    if (joint_classifier_) {
      for (auto& p : classifier_->parameters()) state.push_back(p);
      for (auto& b : classifier_->buffers()) state.push_back(b);
    }
    env_.dist->broadcast_from_root(state);
    ema_reset(*ema_, *model_);
    Distributed* dist = env_.dist;
    model_->set_rank_sum([dist](const torch::Tensor& x) { return dist->sum_across_ranks(x); });
    averager_ = std::make_unique<GradientAverager>(
        *env_.dist, params_, std::max<std::int64_t>(1, static_cast<std::int64_t>(o_.bucket_mb * (1 << 20))));
  }
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      params_, torch::optim::AdamWOptions(o_.lr).betas({0.9, 0.999}).weight_decay(o_.weight_decay));

  // Everything that makes a checkpoint's weights meaningful for this run; optimizer settings are
  // left out so that a diverged run can resume from its last checkpoint with a lower LR.
  nlohmann::json key = to_json(meta());
  key.erase("steps_trained");
  key["data"] = hash_bytes(data_.images.data_ptr(), static_cast<std::size_t>(data_.images.numel())) +
                hash_bytes(data_.labels.data_ptr(), static_cast<std::size_t>(data_.labels.numel() * 8));
  key["seed"] = env_.seed;
  key["batch"] = {o_.batch_size, o_.accumulate};
  if (o_.class_power != 1.0) key["class_power"] = o_.class_power;  // absent at 1: older checkpoints stay valid
  key["ac"] = {o_.ac_weight, o_.ac_classifier, o_.min_snr, o_.flip};
  key["classifier"] = env_.classifier_fingerprint;
  key["precision"] = env_.precision == torch::kFloat32 ? "fp32" : "bf16";
  key_ = key.dump();
}

Trainer::~Trainer() = default;

bool Trainer::is_root() const { return rank_ == 0; }

std::size_t Trainer::gradient_buckets() const { return averager_ ? averager_->bucket_count() : 0; }

DenoiserMeta Trainer::meta() const {
  DenoiserMeta m;
  m.model = model_config_;
  m.diffusion = diffusion_config_;
  m.class_names = data_.class_names;
  m.steps_trained = step_;
  m.parameters = model_->parameter_count();
  m.cond_drop = o_.conditioning == Conditioning::kCfg ? o_.cond_drop : 0.0;
  return m;
}

double Trainer::lr_at(std::int64_t step) const {
  const double warm =
      o_.warmup > 0 ? std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(o_.warmup)) : 1.0;
  if (o_.lr_schedule != "cosine" || step < o_.warmup) return o_.lr * warm;
  const double span = std::max<double>(1.0, static_cast<double>(o_.steps - o_.warmup));
  double progress = std::min(1.0, static_cast<double>(step - o_.warmup) / span);
  // A wall-clock budget usually ends training long before train.steps; the decay then follows the
  // clock, so a time-budgeted run still ends at a low learning rate (elapsed_ is agreed by all ranks).
  if (o_.minutes > 0) progress = std::max(progress, std::min(1.0, elapsed_ / (o_.minutes * 60.0)));
  return cosine_decay(o_.lr, progress);
}

double Trainer::seconds_per_denoised_image() {
  torch::NoGradGuard no_grad;
  const std::int64_t n = std::max<std::int64_t>(1, std::min<std::int64_t>(env_.sample_batch, 64));
  const auto c = data_.images.size(1), side = data_.images.size(2);
  const auto format = channels_last_ ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  const auto x = torch::zeros({n, c, side, side}, torch::device(env_.device)).contiguous(format);
  const auto t = torch::full({n}, diffusion_.steps() / 2, torch::dtype(torch::kInt64).device(env_.device));
  const auto y = torch::zeros({n}, torch::dtype(torch::kInt64).device(env_.device));
  // The fastest of three passes after one that pays for allocation: a shared machine's noise
  // only ever adds time.
  double seconds = 0.0;
  for (int pass = 0; pass < 4; ++pass) {
    const auto start = Clock::now();
    {
      AutocastScope autocast(env_.device, env_.precision);
      const auto out = ema_->forward(x, t, y);
      (void)out.sum().item<double>();  // waits for a GPU
    }
    const double s = seconds_since(start);
    if (pass == 1 || (pass > 1 && s < seconds)) seconds = s;
  }
  return seconds / static_cast<double>(n);
}

void Trainer::report_plan(double step_seconds, double budget_seconds) {
  TrainPlanInput in;
  in.parameters = model_->parameter_count();
  in.step_seconds = step_seconds;
  in.images_per_step = o_.batch_size * o_.accumulate;
  in.step = step_;
  in.max_steps = o_.steps;
  in.budget_seconds = budget_seconds;
  in.elapsed_seconds = elapsed_;
  in.train_images = data_.images.size(0);
  if (env_.synthetic_images > 0 && env_.passes_per_image > 0) {
    in.synthetic_images = env_.synthetic_images;
    in.sample_seconds_per_image = env_.passes_per_image * seconds_per_denoised_image();
  }
  in.evaluate_seconds = env_.evaluate_seconds;
  in.evaluate_runs = env_.evaluate_runs;
  const auto now = std::time(nullptr);
  const auto plan = plan_training(in, now);
  reporter_.info(plan.text);
  if (!plan.warning.empty()) reporter_.warn(plan.warning);
  reporter_.event("train_plan", plan_fields(plan, in));
  write_train_plan(env_.dir / "plan.json", plan, in, now);
}

double Trainer::train_step(std::int64_t step) {
  model_->train();
  if (joint_classifier_) classifier_->train();
  const double lr = lr_at(step);
  for (auto& group : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

  double loss_sum = 0.0;
  torch::Tensor loss_total;
  const std::int64_t b = o_.batch_size / world_, first = rank_ * b;
  const auto dev = env_.device;
  const auto c = data_.images.size(1), side = data_.images.size(2);
  for (int micro = 0; micro < o_.accumulate; ++micro) {
    const std::int64_t global_micro = step * o_.accumulate + micro;
    auto local = batches_->for_rank(global_micro, rank_, world_);
    const auto idx = torch::from_blob(local.data(), {b}, torch::kInt64).clone();
    auto x0 = to_model_range(data_.images.index_select(0, idx));  // [b, C, H, W] in [-1, 1]
    auto y = data_.labels.index_select(0, idx);
    // Every random choice about a sample comes from a stream keyed by its position in the global
    // batch sequence, not by the rank or the local batch: one rank with batch 2B and two ranks
    // with B each draw the same flips, timesteps, label drops, noise and dropout masks, and a
    // resumed run draws what the uninterrupted one would have.
    auto flip = torch::empty({b}, torch::kBool), drop = torch::empty({b}, torch::kBool);
    auto t = torch::empty({b}, torch::kInt64), seeds = torch::empty({b}, torch::kInt64);
    auto noise = torch::empty({b, c, side, side});
    auto flip_a = flip.accessor<bool, 1>(), drop_a = drop.accessor<bool, 1>();
    auto t_a = t.accessor<std::int64_t, 1>(), seeds_a = seeds.accessor<std::int64_t, 1>();
    for (std::int64_t j = 0; j < b; ++j) {
      Rng rng(mix_seed(env_.seed, static_cast<std::uint64_t>(global_micro * o_.batch_size + first + j)));
      flip_a[j] = rng.unit() < 0.5;
      t_a[j] = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(diffusion_.steps())));
      drop_a[j] = rng.unit() < o_.cond_drop;
      const auto noise_seed = rng.next();
      seeds_a[j] = static_cast<std::int64_t>(rng.next() >> 1);
      noise[j].normal_(0.0, 1.0, at::detail::createCPUGenerator(noise_seed));  // [C, H, W]
    }
    if (o_.flip) x0 = torch::where(flip.view({b, 1, 1, 1}), x0.flip({3}), x0);
    auto y_in = y;
    if (o_.conditioning == Conditioning::kCfg && o_.cond_drop > 0)
      y_in = torch::where(drop, torch::full_like(y, model_->null_label()), y);
    const auto format = channels_last_ ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
    {
      // One host-to-device copy per micro-batch (on the CPU these are the tensors themselves).
      auto moved = to_device_once({x0, noise, t, y, y_in}, dev);
      x0 = moved[0].contiguous(format);
      noise = moved[1].contiguous(format);
      t = moved[2];
      y = moved[3];
      y_in = moved[4];
    }

    auto x_t = diffusion_.q_sample(x0, t, noise);
    torch::Tensor out;
    {
      AutocastScope autocast(dev, env_.precision);
      out = model_->forward(x_t, t, y_in, seeds);  // [b, C, H, W]
    }
    auto loss = diffusion_.loss_per_example(out, x0, t, noise, o_.min_snr).mean();
    if (classifier_) {
      // ac: the classifier judges the denoiser's estimate of the clean image. It runs in fp32:
      // its plain GroupNorm layers do not accept bf16 activations under CPU autocast.
      auto x0_hat = diffusion_.denoise(out, x_t, t).x0.clamp(-1.0, 1.0);
      auto ce = torch::nn::functional::cross_entropy(classifier_->forward(x0_hat), y);
      loss = loss + o_.ac_weight * ce;
    }
    if (averager_ && micro + 1 == o_.accumulate) averager_->arm();
    (loss / static_cast<double>(o_.accumulate)).backward();
    // Summed where it was computed, in double as on the host: one read-back per step, not per
    // micro-batch.
    const auto l = loss.detach().to(torch::kFloat64);
    loss_total = loss_total.defined() ? loss_total + l : l;
  }
  loss_sum = loss_total.item<double>();
  if (averager_) {
    allreduce_seconds_ += averager_->finish();
    auto total = torch::full({1}, loss_sum, torch::kFloat64);
    env_.dist->all_reduce(total, ReduceKind::kSum);
    loss_sum = total.item<double>() / world_;
  }
  const double mean_loss = loss_sum / static_cast<double>(o_.accumulate);
  if (!std::isfinite(mean_loss)) return mean_loss;  // the caller stops before the update
  if (o_.grad_clip > 0) torch::nn::utils::clip_grad_norm_(params_, o_.grad_clip);
  optimizer_->step();
  optimizer_->zero_grad();
  ema_update(*ema_, *model_, ema_decay_at(o_.ema_decay, o_.ema_warmup, step));
  return mean_loss;
}

TrainSummary Trainer::run() {
  if (is_root()) ensure_directory(env_.dir);
  TrainSummary summary;
  restore();
  if (env_.dist) {
    // Every rank read the same checkpoint folder; a rank that saw another state would silently
    // train something else.
    auto v = torch::tensor({static_cast<double>(step_), -static_cast<double>(step_)}, torch::kFloat64);
    env_.dist->all_reduce(v, ReduceKind::kMax);
    if (v[0].item<double>() != -v[1].item<double>()) {
      throw UserError(ExitCode::kIoError,
                      fmt::format("rank {} resumed at step {} but another rank at step {}: the ranks do not "
                                  "see the same {} (is the work directory on a shared file system?)",
                                  rank_, step_, v[0].item<double>(), checkpoint_dir().string()));
    }
  }
  if (is_root() && discard_checkpoints_) {
    for (const auto& p : list_checkpoints(checkpoint_dir())) fs::remove(p);
  }
  summary.start_step = step_;
  if (is_root()) truncate_loss_curve(loss_csv(), step_);

  const std::int64_t images_per_step = o_.batch_size * o_.accumulate;
  const double budget = o_.minutes > 0 ? o_.minutes * 60.0 : 0.0;
  Progress progress(reporter_, "train", std::max<std::int64_t>(0, o_.steps - step_), "step");
  std::int64_t last_saved = step_;
  double run_seconds = 0.0, interval_allreduce = 0.0;
  std::int64_t run_steps = 0, plan_steps = 0;
  double plan_seconds = 0.0;
  bool planned = false;

  auto last_saved_at = Clock::now();
  auto checkpoint = [&]() {
    if (last_saved != step_ && is_root()) save(step_);
    last_saved = step_;
    last_saved_at = Clock::now();
  };

  while (step_ < o_.steps) {
    if (budget > 0 && elapsed_ >= budget) {
      summary.time_budget_reached = true;
      break;
    }
    const auto start = Clock::now();
    double loss = 0.0;
    try {
      loss = train_step(step_);
    } catch (const UserError&) {
      throw;
    } catch (const std::exception& e) {
      // A collective failing inside the backward pass can come back wrapped by autograd.
      if (env_.dist) throw UserError(ExitCode::kFailure, env_.dist->describe_failure(e));
      throw;
    }
    if (!std::isfinite(loss)) {
      const auto kept = list_checkpoints(checkpoint_dir());
      throw UserError(
          ExitCode::kFailure,
          fmt::format("training diverged: the loss is {} at step {}. {}; lower --train.lr (now {:g}) or raise "
                      "--train.warmup and rerun to continue from it",
                      loss, step_ + 1,
                      kept.empty() ? std::string("No checkpoint was written yet")
                                   : fmt::format("The last good checkpoint {} is kept", kept.front().string()),
                      o_.lr));
    }
    const double secs = seconds_since(start);
    ++step_;
    elapsed_ += secs;
    run_seconds += secs;
    ++run_steps;
    // The plan, once, from steps 2.. of this run (the first pays for allocation and warm-up).
    if (run_steps > 1) {
      plan_seconds += secs;
      ++plan_steps;
    }
    if (!planned && is_root() && (plan_steps >= 10 || (plan_steps >= 2 && plan_seconds >= 5.0))) {
      planned = true;
      report_plan(plan_seconds / static_cast<double>(plan_steps), budget);
    }
    interval_loss_ += loss;
    interval_seconds_ += secs;
    ++interval_steps_;
    const int stop = agree_on_stop(elapsed_);
    if (budget > 0) progress.set_time_budget(budget, elapsed_);
    progress.advance();
    if (interval_steps_ == o_.log_every || step_ == o_.steps) {
      const double ips = static_cast<double>(interval_steps_ * images_per_step) / std::max(1e-9, interval_seconds_);
      summary.last_loss = interval_loss_ / static_cast<double>(interval_steps_);
      if (is_root()) {
        append_loss_row(loss_csv(), step_, summary.last_loss, lr_at(step_ - 1), ips);
        nlohmann::json fields = {
            {"step", step_}, {"loss", summary.last_loss}, {"images_per_second", ips}, {"ranks", world_}};
        if (env_.dist)
          fields["allreduce_ms_per_step"] = 1000.0 * (allreduce_seconds_ - interval_allreduce) / interval_steps_;
        reporter_.event("train_interval", fields);
      }
      interval_allreduce = allreduce_seconds_;
      progress.set_figure(fmt::format("loss {:.4f}, {:.1f} img/s", summary.last_loss, ips));
      interval_loss_ = interval_seconds_ = 0.0;
      interval_steps_ = 0;
    }
    if (step_ % o_.checkpoint_every == 0 ||
        (o_.checkpoint_minutes > 0 && seconds_since(last_saved_at) >= o_.checkpoint_minutes * 60.0)) {
      checkpoint();
    }
    if (stop) {
      // Every rank stops after the same step (the request may reach them at different times).
      checkpoint();
      throw StopRequested(stop);
    }
  }
  if (interval_steps_ > 0) {
    summary.last_loss = interval_loss_ / static_cast<double>(interval_steps_);
    if (is_root()) {
      append_loss_row(loss_csv(), step_, summary.last_loss, lr_at(step_ - 1),
                      static_cast<double>(interval_steps_ * images_per_step) / std::max(1e-9, interval_seconds_));
    }
  }
  verify_ranks_agree();
  checkpoint();
  progress.finish();
  summary.end_step = step_;
  summary.images_per_second = run_seconds > 0 ? static_cast<double>(run_steps * images_per_step) / run_seconds : 0.0;
  summary.allreduce_ms_per_step = run_steps > 0 ? 1000.0 * allreduce_seconds_ / static_cast<double>(run_steps) : 0.0;
  return summary;
}

}  // namespace augment
