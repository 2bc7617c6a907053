#include "stages/train_stage.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/classifier.h"
#include "models/denoiser_file.h"
#include "models/device.h"
#include "models/distributed.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/context.h"
#include "pipeline/work_paths.h"
#include "stages/cached_split.h"
#include "stages/classifier_stage.h"
#include "stages/evaluate_estimate.h"
#include "stages/run_defaults.h"
#include "stages/sample_plan.h"
#include "stages/sample_stage.h"
#include "stages/stage_device.h"
#include "stages/trainer.h"

namespace augment {

namespace {

// Every rank trains in the precision rank 0 chose: `auto` decides from each machine's CPU, and a
// job over nodes that differ must not mix bf16 and fp32 ranks (their weights would drift apart).
// Rank 0 says how many ranks would have chosen otherwise.
torch::ScalarType precision_of_root(Distributed& dist, torch::ScalarType mine, Reporter& report) {
  auto chosen = torch::tensor({static_cast<std::int64_t>(mine)}, torch::kInt64);
  dist.broadcast_from_root({chosen});
  const auto root = static_cast<torch::ScalarType>(chosen.item<std::int64_t>());
  auto differing = torch::tensor({root == mine ? std::int64_t{0} : std::int64_t{1}}, torch::kInt64);
  dist.all_reduce(differing, ReduceKind::kSum);
  if (const auto n = differing.item<std::int64_t>(); n > 0 && dist.is_root()) {
    report.warn(
        fmt::format("{} of {} ranks would have chosen another precision on their own CPU; all train in {} as "
                    "rank 0 chose (set --precision to pick one yourself)",
                    n, dist.world_size(), root == torch::kBFloat16 ? "bf16" : "fp32"));
  }
  return root;
}

}  // namespace

void TrainOptions::bind(OptionBinder<TrainOptions>& b) {
  using I = std::int64_t;
  const FieldOptions bookkeeping = kTransient;
  b.add(
      "preset", &TrainOptions::preset,
      "quick, default or thorough: scales the model and the budget that are sized by the data and the device together "
      "(`augment help defaults`); options you set win",
      {}, kField.with_alias("preset").with_choices({"quick", "default", "thorough"}));
  b.add("steps", &TrainOptions::steps,
        "optimizer steps to train (raise it and rerun to train on from the last checkpoint)", at_least<I>(1));
  b.add("minutes", &TrainOptions::minutes,
        "wall-clock training budget in minutes over all resumed runs; 0: only train.steps counts", at_least(0.0));
  b.add("batch_size", &TrainOptions::batch_size, "images per micro-batch", at_least<I>(1));
  b.add("accumulate", &TrainOptions::accumulate, "micro-batches whose gradients make one optimizer step",
        at_least<I>(1));
  b.add("class_power", &TrainOptions::class_power,
        "each epoch draws class c in proportion to (its train images)^class_power: 1 as in the data, 0.5 square-root "
        "rebalancing (rare classes repeated, common ones thinned), 0 uniform over classes",
        in_range(0.0, 1.0));
  b.add("lr", &TrainOptions::lr, "AdamW learning rate", in_range(1e-8, 1.0));
  b.add("warmup", &TrainOptions::warmup, "steps of linear learning-rate warm-up", at_least<I>(0));
  b.add("lr_schedule", &TrainOptions::lr_schedule,
        "after warm-up: constant, or cosine decay to zero at train.steps or at the end of train.minutes, whichever "
        "comes first",
        {}, kField.with_choices({"constant", "cosine"}));
  b.add("weight_decay", &TrainOptions::weight_decay, "AdamW decoupled weight decay", in_range(0.0, 1.0));
  b.add("grad_clip", &TrainOptions::grad_clip, "clip the global gradient norm to this; 0: off", at_least(0.0));
  b.add("ema_decay", &TrainOptions::ema_decay, "decay of the weight average used for sampling", in_range(0.0, 1.0));
  b.add("ema_warmup", &TrainOptions::ema_warmup, "EMA decay ramps as (1+n)/(ema_warmup+n) up to ema_decay; 0: no ramp",
        at_least<I>(0));
  b.add("min_snr", &TrainOptions::min_snr, "min-SNR-gamma loss weighting (5 is typical); 0: plain MSE", at_least(0.0));
  b.add("flip", &TrainOptions::flip, "random horizontal flips of the training images");
  b.add(
      "conditioning", &TrainOptions::conditioning,
      "class conditioning: none (unconditional), cbn (class-conditional norms), ac (label plane + auxiliary classifier "
      "loss), cfg (class embedding for classifier-free guidance)");
  b.add("cbn_norm", &TrainOptions::cbn_norm,
        "cbn: the conditional norm is batch norm (as in the research) or group norm", {},
        kField.with_choices({"batch", "group"}));
  b.add("cond_drop", &TrainOptions::cond_drop, "cfg: probability of replacing a label with the no-class token",
        in_range(0.0, 1.0));
  b.add("ac_weight", &TrainOptions::ac_weight,
        "ac: weight of the classifier cross-entropy on the predicted clean image", at_least(0.0));
  b.add("ac_classifier", &TrainOptions::ac_classifier,
        "ac: frozen (the pretrained classifier from `augment classifier`) or joint (a fresh classifier trained "
        "alongside, "
        "the co-adapting variant)",
        {}, kField.with_choices({"frozen", "joint"}));
  b.add("channels", &TrainOptions::channels, "base channels of the U-Net", in_range<I>(4, 1024));
  b.add("channel_mult", &TrainOptions::channel_mult, "channel multiplier per resolution level (one level per entry)",
        each_at_least(1));
  b.add("blocks", &TrainOptions::blocks, "residual blocks per level", in_range<I>(1, 8));
  b.add("attention", &TrainOptions::attention, "feature-map sides that get self-attention (e.g. 16,8)",
        each_at_least(1));
  b.add("heads", &TrainOptions::heads, "attention heads", in_range<I>(1, 64));
  b.add("dropout", &TrainOptions::dropout, "dropout in the residual blocks", in_range(0.0, 0.9));
  b.add("diffusion_steps", &TrainOptions::diffusion_steps, "diffusion timesteps T", in_range<I>(2, 100000));
  b.add("schedule", &TrainOptions::schedule, "noise schedule");
  b.add("prediction", &TrainOptions::prediction, "what the denoiser predicts: eps (the noise) or v");
  b.add("memory_format", &TrainOptions::memory_format,
        "tensor layout: channels_last (NHWC), contiguous (NCHW), or auto (channels_last on CUDA and for 64+ base "
        "channels)",
        {}, kField.with_choices({"auto", "channels_last", "contiguous"}));
  b.add("checkpoint_every", &TrainOptions::checkpoint_every, "steps between checkpoints", at_least<I>(1), bookkeeping);
  b.add("checkpoint_minutes", &TrainOptions::checkpoint_minutes,
        "also checkpoint when this many minutes passed since the last checkpoint (a hard kill loses at most this); 0: "
        "off",
        at_least(0.0), bookkeeping);
  b.add("keep_checkpoints", &TrainOptions::keep_checkpoints, "checkpoints kept (older ones are deleted)",
        at_least<I>(1), bookkeeping);
  b.add("log_every", &TrainOptions::log_every, "steps per row of train/loss.csv", at_least<I>(1), bookkeeping);
  b.add("bucket_mb", &TrainOptions::bucket_mb,
        "data-parallel: MiB of gradients per all-reduce bucket (smaller: more overlap with the backward pass, more "
        "messages)",
        in_range(0.001, 1024.0), bookkeeping);
}

namespace {

// A class with very few training images is learned poorly whatever the model: its samples tend to
// copy the few images or miss the class. Said before training, naming the classes.
constexpr std::int64_t kFewImages = 20;

void warn_small_classes(Reporter& report, const torch::Tensor& labels, const std::vector<std::string>& names) {
  const auto counts = torch::bincount(labels.to(torch::kInt64), {}, static_cast<std::int64_t>(names.size()));
  std::vector<std::string> small;
  for (std::size_t c = 0; c < names.size(); ++c) {
    const auto n = counts[static_cast<std::int64_t>(c)].item<std::int64_t>();
    if (n < kFewImages) small.push_back(fmt::format("'{}' ({})", names[c], n));
  }
  if (small.empty()) return;
  report.warn(
      fmt::format("{} of {} classes have fewer than {} training images: {}. The model learns little of such a class: "
                  "expect its synthetic images to repeat its few images or to miss the class, and check its row in the "
                  "evaluate report (conditional accuracy, precision and recall) before using them; more real images "
                  "help most",
                  small.size(), names.size(), kFewImages, fmt::join(small, ", ")));
}

// What the plan needs to say how long sampling and evaluating will take after training. Best
// effort: a policy the sample stage would refuse gives no estimate here (the sample stage says
// what is wrong).
void plan_after_training(const Context& ctx, const TrainOptions& o, TrainerEnv& env) {
  try {
    const auto sample = ctx.options<SampleOptions>();
    env.synthetic_images = plan_for_work(ctx.work(), parse_sample_policy(sample.policy)).total_synthetic();
    env.passes_per_image =
        denoiser_passes_per_image(sample, static_cast<int>(o.diffusion_steps), o.conditioning == Conditioning::kCfg);
    env.sample_batch = sample.batch_size;
  } catch (const std::exception&) {
    env.synthetic_images = 0;
  }
  try {
    const auto e = estimate_evaluate(ctx, env.synthetic_images);
    env.evaluate_seconds = e.seconds;
    env.evaluate_runs = e.runs;
  } catch (const std::exception&) {
    env.evaluate_seconds = 0;  // advice only: an unreadable cache is the train stage's own error to report
  }
}

bool uses_frozen_classifier(const TrainOptions& o) {
  return o.conditioning == Conditioning::kAc && o.ac_classifier == "frozen";
}

class TrainStage final : public Stage {
 public:
  std::string name() const override { return "train"; }
  std::string summary() const override {
    return "train the class-conditional diffusion model on the cached train split";
  }
  std::vector<std::string> option_scopes() const override { return {"train", "seed", "precision"}; }
  std::vector<std::string> inputs(const Context& ctx) const override {
    std::vector<std::string> in{work_file::kCacheTrain};
    if (uses_frozen_classifier(ctx.options<TrainOptions>())) in.push_back(work_file::kClassifierModel);
    return in;
  }
  std::vector<std::string> outputs(const Context&) const override {
    return {work_file::kTrainModel, work_file::kTrainModelMeta};
  }
  std::string content_digest(const Context& ctx, const std::string& rel) const override {
    return rel == work_file::kTrainModel ? archive_fingerprint(ctx.work() / rel) : "";
  }

  void run(Context& ctx) override {
    const auto o = ctx.options<TrainOptions>();
    Distributed* dist = as_distributed(ctx.job());
    const int local_ranks = dist ? dist->env().local_world_size : 1;
    // Ranks sharing a node share its cores.
    use_stage_threads(ctx.global().threads, local_ranks);
    auto device = stage_device(ctx.global().device);
    if (dist && device.is_cuda() && (ctx.global().device == "auto" || ctx.global().device == "cuda")) {
      // One GPU per rank on a node: LOCAL_RANK / SLURM_LOCALID picks it.
      device = torch::Device(torch::kCUDA,
                             static_cast<c10::DeviceIndex>(dist->env().local_rank % torch::cuda::device_count()));
    }
    auto precision = stage_precision(ctx.global().precision, device, CpuAuto::kBf16WhereFast);
    if (dist) precision = precision_of_root(*dist, precision, ctx.report());
    auto split = load_cached_split(ctx.path(work_file::kCacheTrain));
    const auto& info = split.info;

    TrainerEnv env;
    env.dir = ctx.dir("train");
    env.device = device;
    env.precision = precision;
    env.seed = static_cast<std::uint64_t>(ctx.global().seed);
    env.dist = dist;
    if (uses_frozen_classifier(o)) {
      const auto path = ctx.path(work_file::kClassifierModel);
      std::error_code ec;
      if (!fs::exists(path, ec)) {
        throw UserError(ExitCode::kNoInput,
                        fmt::format("train.conditioning = ac needs the frozen classifier {}; run `augment "
                                    "classifier` first (or use --train.ac_classifier joint)",
                                    path.string()));
      }
      env.frozen_classifier = with_hints(
          [&] { return load_frozen_classifier(path, info.class_names, info.resolution, info.channels, device); },
          kRunClassifierFirst, kRerunClassifier);
      env.classifier_fingerprint = archive_fingerprint(path);
    }
    if (!dist || dist->is_root()) {
      ensure_directory(env.dir);
      if (const auto line = sized_defaults_line(ctx.config()); !line.empty()) {
        ctx.report().info(line);
        const auto sized = sized_defaults(info.resolution, o.preset, device.is_cuda());
        if (!sized.warning.empty()) ctx.report().warn(sized.warning);
      }
      warn_small_classes(ctx.report(), split.labels, info.class_names);
      plan_after_training(ctx, o, env);
    }
    Trainer trainer(o, TrainData{split.images, split.labels, info.class_names}, env, ctx.report());
    const auto meta = trainer.meta();
    ctx.report().info(
        fmt::format("denoiser: {:.2f} M parameters ({} conditioning, {}x{}x{}, {} classes), {} {} diffusion over {} "
                    "steps, on {} ({})",
                    meta.parameters / 1e6, name_of(meta.model.conditioning), info.resolution, info.resolution,
                    info.channels, info.class_names.size(), name_of(meta.diffusion.schedule),
                    name_of(meta.diffusion.prediction), meta.diffusion.steps, describe(device, precision),
                    precision_reason(ctx.global().precision, device, precision)));
    if (dist) {
      ctx.report().info(fmt::format("data-parallel: {} ranks ({}, {} backend), global batch {} = {} per rank",
                                    dist->world_size(), dist->env().launcher, dist->backend(), o.batch_size,
                                    o.batch_size / dist->world_size()));
      ctx.report().info(
          fmt::format("gradient all-reduce in {} buckets of up to {:g} MiB", trainer.gradient_buckets(), o.bucket_mb));
    }
    const auto s = trainer.run();
    ctx.report().info(fmt::format(
        "trained steps {}..{} at {:.1f} images/s{}; final loss {:.4f}{}", s.start_step, s.end_step, s.images_per_second,
        dist ? fmt::format(" ({:.1f} ms/step waiting for gradient all-reduce)", s.allreduce_ms_per_step)
             : std::string(),
        s.last_loss, s.time_budget_reached ? " (time budget reached)" : ""));
    ctx.report().event("train_summary", {{"images_per_second", s.images_per_second},
                                         {"allreduce_ms_per_step", s.allreduce_ms_per_step},
                                         {"ranks", dist ? dist->world_size() : 1},
                                         {"steps", s.end_step - s.start_step}});
    if (!dist || dist->is_root())
      save_denoiser(trainer.ema(), trainer.meta(), ctx.path(work_file::kTrainModel),
                    ctx.path(work_file::kTrainModelMeta));
  }
};

}  // namespace

std::unique_ptr<Stage> make_train_stage() { return std::make_unique<TrainStage>(); }

}  // namespace augment
