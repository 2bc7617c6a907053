// The trainer's rolling checkpoints (exact resume) and, for data-parallel jobs, the checks that
// every rank agrees: on when to stop and on the weights.
#include "stages/trainer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "manifests/loss_curve.h"
#include "models/checkpoint.h"
#include "models/distributed.h"
#include "models/ema.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/base/report.h"
#include "pipeline/base/signals.h"

namespace augment {

void Trainer::save(std::int64_t step) {
  save_checkpoint(
      checkpoint_dir(), step,
      [&](torch::serialize::OutputArchive& a) {
        a.write("key", c10::IValue(key_));
        torch::serialize::OutputArchive model, ema, optimizer;
        model_->save(model);
        ema_->save(ema);
        optimizer_->save(optimizer);
        a.write("model", model);
        a.write("ema", ema);
        a.write("optimizer", optimizer);
        if (joint_classifier_) {
          torch::serialize::OutputArchive classifier;
          classifier_->save(classifier);
          a.write("classifier", classifier);
        }
        a.write("step", c10::IValue(step));
        // Randomness is keyed by sample position; the generator state is kept for checkpoints
        // that older builds read.
        a.write("elapsed", c10::IValue(elapsed_));
        // The loss curve's open interval, so a row logged after a resume averages the same steps.
        a.write("interval_loss", c10::IValue(interval_loss_));
        a.write("interval_seconds", c10::IValue(interval_seconds_));
        a.write("interval_steps", c10::IValue(interval_steps_));
        auto gen = at::detail::getDefaultCPUGenerator();
        std::lock_guard<std::mutex> lock(gen.mutex());
        a.write("cpu_rng", c10::IValue(gen.get_state()));
      },
      static_cast<int>(o_.keep_checkpoints));
}

bool Trainer::restore() {
  auto restored = restore_latest_checkpoint(checkpoint_dir(), env_.device, [&](torch::serialize::InputArchive& a) {
    c10::IValue key;
    a.read("key", key);
    if (key.toStringRef() != key_) return RestoreResult::kIncompatible;
    torch::serialize::InputArchive model, ema, optimizer;
    a.read("model", model);
    a.read("ema", ema);
    a.read("optimizer", optimizer);
    model_->load(model);
    ema_->load(ema);
    optimizer_->load(optimizer);
    if (joint_classifier_) {
      torch::serialize::InputArchive classifier;
      a.read("classifier", classifier);
      classifier_->load(classifier);
    }
    c10::IValue step, elapsed, rng;
    a.read("step", step);
    a.read("elapsed", elapsed);
    a.read("cpu_rng", rng);
    step_ = step.toInt();
    elapsed_ = elapsed.toDouble();
    c10::IValue loss_sum, seconds_sum, steps_in;  // absent in older checkpoints
    interval_loss_ = a.try_read("interval_loss", loss_sum) ? loss_sum.toDouble() : 0.0;
    interval_seconds_ = a.try_read("interval_seconds", seconds_sum) ? seconds_sum.toDouble() : 0.0;
    interval_steps_ = a.try_read("interval_steps", steps_in) ? steps_in.toInt() : 0;
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng.toTensor().to(torch::kCPU));
    return RestoreResult::kRestored;
  });
  if (!restored) {
    if (!list_checkpoints(checkpoint_dir()).empty()) {
      if (is_root()) {
        reporter_.warn(
            fmt::format("no usable checkpoint in {} (written with other options, or damaged); training from scratch",
                        checkpoint_dir().string()));
      }
      // Removed by run() once every rank has read the folder.
      discard_checkpoints_ = true;
    }
    return false;
  }
  if (is_root()) {
    for (const auto& why : restored->skipped) reporter_.warn("skipped checkpoint " + why);
  }
  if (channels_last_) {
    model_->to_channels_last();
    ema_->to_channels_last();
  }
  for (auto& p : ema_->parameters()) p.set_requires_grad(false);
  reporter_.info(fmt::format("resuming from {} (step {})", restored->path.string(), step_));
  return true;
}

int Trainer::agree_on_stop(double& elapsed) {
  if (!env_.dist) return stop_signal();
  auto v = torch::tensor({static_cast<double>(stop_signal()), elapsed}, torch::kFloat64);
  env_.dist->all_reduce(v, ReduceKind::kMax);
  elapsed = v[1].item<double>();
  return static_cast<int>(v[0].item<double>());
}

void Trainer::verify_ranks_agree() {
  if (!env_.dist) return;
  std::string digests;
  for (auto* m : {&*model_, &*ema_}) {
    for (const auto& t : m->parameters()) {
      auto c = t.detach().to(torch::kCPU).contiguous();
      digests += hash_bytes(c.data_ptr(), static_cast<std::size_t>(c.nbytes()));
    }
    for (const auto& t : m->buffers()) {
      auto c = t.detach().to(torch::kCPU).contiguous();
      digests += hash_bytes(c.data_ptr(), static_cast<std::size_t>(c.nbytes()));
    }
  }
  const auto h = hash64(digests);
  // Two 32-bit halves are exact in float64; equal on every rank iff their max equals their min.
  auto hi = torch::tensor({static_cast<double>(h >> 32), static_cast<double>(h & 0xFFFFFFFFULL)}, torch::kFloat64);
  auto lo = hi.clone();
  env_.dist->all_reduce(hi, ReduceKind::kMax);
  env_.dist->all_reduce(lo, ReduceKind::kMin);
  if (!torch::equal(hi, lo)) {
    throw UserError(ExitCode::kSoftware,
                    fmt::format("rank {}: the ranks' weights differ after step {} (data-parallel training "
                                "diverged); please report this",
                                rank_, step_));
  }
  if (is_root()) reporter_.info(fmt::format("weights identical on all {} ranks (digest {:016x})", world_, h));
}

}  // namespace augment
