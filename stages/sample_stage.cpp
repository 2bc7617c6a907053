#include "stages/sample_stage.h"

#include <cstdlib>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "manifests/sample_store.h"
#include "models/classifier.h"
#include "models/classifier_training.h"
#include "models/denoiser_file.h"
#include "models/device.h"
#include "models/guidance.h"
#include "models/pixel_range.h"
#include "models/sampler.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/base/report.h"
#include "pipeline/base/signals.h"
#include "pipeline/context.h"
#include "pipeline/work_paths.h"
#include "stages/cached_split.h"
#include "stages/classifier_stage.h"
#include "stages/sample_plan.h"
#include "stages/sampling_driver.h"
#include "stages/stage_device.h"
#include "stages/train_stage.h"

namespace augment {

namespace {

ShardSpec shard_of_invocation(const Context& ctx) {
  try {
    return resolve_shard(ctx.options<SampleOptions>().shard, [](const char* name) { return std::getenv(name); });
  } catch (const std::invalid_argument& e) {
    throw UserError(ExitCode::kConfig, e.what());
  }
}

bool all_sharded(const std::vector<std::pair<ShardSpec, fs::path>>& journals) {
  return std::all_of(journals.begin(), journals.end(), [](const auto& j) { return j.first.count > 1; });
}

// Journals of another shard count than this run's cannot be merged with it: say so before any work.
void refuse_other_shard_counts(const fs::path& sample_dir, const ShardSpec& shard) {
  for (const auto& [spec, path] : find_journals(sample_dir)) {
    if (spec.count == shard.count) continue;
    throw UserError(
        ExitCode::kDataError,
        fmt::format("{} was written by a sampling run split into {} shards, and this run uses {}: finish that run with "
                    "`augment sample --shard K/{}` for its missing shards, or delete {}/journal-*-of-{}.jsonl to start "
                    "over with {} shards (images already generated are not reused across shard counts)",
                    path.string(), spec.count, shard.count, spec.count, sample_dir.string(), spec.count, shard.count));
  }
}

// Fingerprint of the weights themselves: LibTorch's archive bytes differ between two saves of
// equal weights, and equal weights must give equal manifests (e.g. a model retrained bit-exactly).
std::string weights_fingerprint(UNet& model) {
  std::string digests;
  for (const auto& tensors : {model->named_parameters(), model->named_buffers()}) {
    for (const auto& item : tensors) {
      const auto t = item.value().detach().cpu().contiguous();
      digests += item.key() + ":" + hash_bytes(t.data_ptr(), static_cast<std::size_t>(t.nbytes())) + ";";
    }
  }
  return hash_text(digests);
}

// The plan's classes must be the ones the denoiser was trained on.
void check_model_classes(const SamplePlan& plan, const LoadedDenoiser& loaded, const fs::path& model_pt) {
  std::vector<std::string> plan_names;
  for (const auto& c : plan.classes) plan_names.push_back(c.name);
  if (plan_names != loaded.meta.class_names) {
    throw UserError(ExitCode::kDataError,
                    fmt::format("the denoiser {} was trained on other classes than subsample/classes.json "
                                "lists; rerun `augment train` (it goes stale by itself when its inputs change)",
                                model_pt.string()));
  }
}

// What shapes every image of this run besides its seed, as the journals record it.
SamplingSettings settings_of(const SampleOptions& so, LoadedDenoiser& loaded, const Sampler& sampler,
                             const GaussianDiffusion& diffusion, std::pair<double, double> interval) {
  const auto& meta = loaded.meta;
  const bool cfg = meta.model.conditioning == Conditioning::kCfg;
  SamplingSettings settings;
  settings.sampler = name_of(so.sampler);
  settings.steps = sampler.evaluations(diffusion);
  settings.eta = so.sampler == SamplerKind::kDdim ? so.eta : 0.0;
  settings.clip = so.clip;
  settings.guidance = cfg ? so.guidance : 0.0;
  settings.guided_from = cfg ? interval.first : 0.0;
  settings.guided_to = cfg ? interval.second : 1.0;
  settings.conditioning = name_of(meta.model.conditioning);
  settings.checkpoint = weights_fingerprint(loaded.model);
  settings.resolution = meta.model.resolution;
  settings.channels = meta.model.in_channels;
  return settings;
}

// One batch of requests: denoised from their seeds' noise, quantised on the device (one read-back
// of uint8 pixels per batch), and scored by `judge` when the classifier filter is on.
GenerateFn generator(const Sampler& sampler, const GaussianDiffusion& diffusion, LoadedDenoiser& loaded,
                     const ModelCall& call, const SamplingSettings& settings, const torch::Device& device,
                     ClassifierNet& judge) {
  return [&](const std::vector<SampleRequest>& requests) {
    std::vector<std::uint64_t> seeds;
    std::vector<std::int64_t> labels;
    for (const auto& r : requests) {
      seeds.push_back(r.seed);
      labels.push_back(r.label);
    }
    const auto y = torch::tensor(labels, torch::kInt64).to(device);
    NoiseSource noise(seeds, settings.channels, settings.resolution, device);
    const auto x = sampler.run(diffusion, denoiser_model_fn(loaded.model, y, call), noise, [] { check_stop(); });
    // Quantised on the device: one read-back of uint8 pixels per batch.
    const auto pixels = to_pixels(x).cpu().permute({0, 2, 3, 1}).contiguous();  // uint8 NHWC
    torch::Tensor confidence;
    if (judge) {
      confidence = torch::softmax(classifier_logits(judge, pixels.permute({0, 3, 1, 2}), device), 1)
                       .gather(1, torch::tensor(labels, torch::kInt64).unsqueeze(1))
                       .squeeze(1)
                       .to(torch::kFloat64)
                       .contiguous();
    }
    std::vector<GeneratedImage> out(requests.size());
    const auto bytes = static_cast<std::size_t>(pixels[0].numel());
    for (std::size_t i = 0; i < requests.size(); ++i) {
      const auto* p = pixels[static_cast<std::int64_t>(i)].data_ptr<std::uint8_t>();
      out[i].pixels.assign(p, p + bytes);
      if (judge) out[i].confidence = confidence[static_cast<std::int64_t>(i)].item<double>();
    }
    return out;
  };
}

class SampleStage final : public Stage {
 public:
  std::string name() const override { return "sample"; }
  std::string summary() const override {
    return "generate the synthetic images of the balance plan with the trained denoiser";
  }
  std::vector<std::string> option_scopes() const override { return {"sample", "seed", "precision"}; }
  std::vector<std::string> inputs(const Context& ctx) const override {
    std::vector<std::string> in{work_file::kSubsampleClasses, work_file::kSubsampleManifest, work_file::kTrainModel,
                                work_file::kTrainModelMeta};
    if (ctx.options<SampleOptions>().min_confidence > 0) in.push_back(work_file::kClassifierModel);
    return in;
  }
  std::vector<std::string> outputs(const Context& ctx) const override {
    const auto shard = shard_of_invocation(ctx);
    std::vector<std::string> out{work_file::kSamplePlan};
    // Unsharded after a complete array run: the array's journals are this run's result.
    const auto journals = find_journals(ctx.dir("sample"));
    if (shard.count == 1 && !journals.empty() && all_sharded(journals)) {
      for (const auto& j : journals) out.push_back(work_file::sample_file(j.second.filename().string()));
      return out;
    }
    out.push_back(work_file::sample_file(journal_path("", shard).filename().string()));
    return out;
  }
  bool runs_alongside_others(const Context& ctx) const override { return shard_of_invocation(ctx).count > 1; }
  // Every kept image of the journals this invocation vouches for, by size and hash (small files).
  std::string verify(const Context& ctx) const override {
    SamplePlan plan;
    try {
      plan = read_sample_plan(ctx.path(work_file::kSamplePlan));
    } catch (const UserError&) {
      return "output missing or modified: sample/plan.json";
    }
    std::vector<fs::path> journals;
    for (const auto& rel : outputs(ctx)) {
      if (rel != work_file::kSamplePlan) journals.push_back(ctx.work() / rel);
    }
    return damaged_sample(ctx.dir("sample"), plan, journals);
  }

  void run(Context& ctx) override {
    const auto so = ctx.options<SampleOptions>();
    const auto shard = shard_of_invocation(ctx);
    const auto dir = ctx.dir("sample");
    ensure_directory(dir);
    const auto journals = find_journals(dir);
    auto plan = prepare_sample_plan(ctx);

    // Run as the prerequisite of emit after an array job: the shards' journals are the result.
    const bool sharded_before = shard.count == 1 && !journals.empty() && all_sharded(journals);
    if (sharded_before) {
      const auto merged = merge_journals(dir, plan);  // names the missing shard or image
      ctx.report().info(fmt::format("all {} shards of the sampling run are complete ({} images)", merged.shard_count,
                                    merged.accepted.size()));
      return;
    }
    refuse_other_shard_counts(dir, shard);

    use_stage_threads(ctx.global().threads);
    const auto device = stage_device(ctx.global().device);
    const auto precision = stage_precision(ctx.global().precision, device, CpuAuto::kBf16WhereFast);
    const auto model_pt = ctx.path(work_file::kTrainModel);
    auto loaded = with_hints([&] { return load_denoiser(model_pt, ctx.path(work_file::kTrainModelMeta), device); },
                             kRunTrainFirst, kRerunTrain);
    const auto& meta = loaded.meta;
    check_model_classes(plan, loaded, model_pt);
    const bool cfg = meta.model.conditioning == Conditioning::kCfg;
    if (!cfg && so.guidance != SampleOptions{}.guidance && so.guidance != 1.0) {
      ctx.report().warn(fmt::format("sample.guidance is ignored: the model uses {} conditioning, not cfg",
                                    name_of(meta.model.conditioning)));
    }

    const auto [guided_from, guided_to] = guidance_interval_of(so);
    SamplerSettings sampler_settings{so.sampler, static_cast<int>(so.steps), so.eta, so.clip};
    std::unique_ptr<Sampler> sampler;
    try {
      sampler = make_sampler(sampler_settings);
    } catch (const std::invalid_argument& e) {
      throw UserError(ExitCode::kConfig, e.what());
    }
    const GaussianDiffusion diffusion(meta.diffusion);
    const auto settings = settings_of(so, loaded, *sampler, diffusion, {guided_from, guided_to});
    const auto job = sampling_job_for(ctx, settings);

    ClassifierNet judge{nullptr};
    if (job.min_confidence > 0) {
      judge = with_hints(
          [&] {
            return load_frozen_classifier(ctx.path(work_file::kClassifierModel), meta.class_names, settings.resolution,
                                          settings.channels, device);
          },
          kRunClassifierFirst, kRerunClassifier);
    }
    ModelCall call;
    call.precision = precision;
    call.channels_last = channels_last_pays(device, meta.model.base_channels);
    call.guidance = cfg ? so.guidance : 1.0;
    const double T = static_cast<double>(meta.diffusion.steps);
    call.set_guided_interval(guided_from, guided_to, T);
    if (call.channels_last) loaded.model->to_channels_last();
    const bool guided = cfg && call.guidance != 1.0;
    ctx.report().info(
        fmt::format("sampling shard {} with {} ({} denoiser evaluations per image{}), {} conditioning, on {} ({})",
                    shard.label(), name_of(so.sampler), settings.steps,
                    guided ? fmt::format(", guidance {} in one 2x batch{}", call.guidance,
                                         guided_from > 0.0 || guided_to < 1.0
                                             ? fmt::format(" for t/T in [{:g}, {:g}]", guided_from, guided_to)
                                             : "")
                           : "",
                    name_of(meta.model.conditioning), describe(device, precision),
                    precision_reason(ctx.global().precision, device, precision)));

    const auto generate = generator(*sampler, diffusion, loaded, call, settings, device, judge);
    const auto summary = run_sampling(job, plan, generate, ctx.report());
    if (summary.generated > 0) {
      ctx.report().info(fmt::format("generated {} images in {} ({:.2f} images/s)", summary.generated,
                                    format_duration(summary.seconds),
                                    summary.generated / std::max(summary.seconds, 1e-9)));
    }
  }
};

}  // namespace

std::unique_ptr<Stage> make_sample_stage() { return std::make_unique<SampleStage>(); }

}  // namespace augment
