#include "stages/sample_stage.h"

#include <cstdlib>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "manifests/sample_store.h"
#include "models/classifier.h"
#include "models/classifier_training.h"
#include "models/denoiser_file.h"
#include "models/device.h"
#include "models/guidance.h"
#include "models/sampler.h"
#include "models/tensor_data.h"
#include "pipeline/context.h"
#include "pipeline/errors.h"
#include "pipeline/fs_util.h"
#include "pipeline/hash.h"
#include "pipeline/report.h"
#include "pipeline/signals.h"
#include "stages/sample_plan.h"

namespace augment {

void SamplerOptions::bind(OptionBinder<SamplerOptions>& b) {
  b.add("sampler", &SamplerOptions::sampler,
        "ddpm (ancestral, every diffusion step), ddim (sample.steps steps, sample.eta noise) or dpmpp2m (DPM-Solver++ 2M, "
        "good at 10-25 steps)",
        {}, {"", {"ddpm", "ddim", "dpmpp2m"}});
  b.add("steps", &SamplerOptions::steps, "denoiser evaluations per image for ddim and dpmpp2m", in_range<std::int64_t>(1, 100000));
  b.add("eta", &SamplerOptions::eta, "ddim: 0 deterministic, 1 as noisy as DDPM", in_range(0.0, 1.0));
  b.add("guidance", &SamplerOptions::guidance,
        "cfg models: classifier-free guidance scale (1 = conditional prediction only, larger = more class-typical, less varied)",
        in_range(0.0, 50.0));
  b.add("guidance_interval", &SamplerOptions::guidance_interval,
        "cfg models: guide only where the noise level t/T lies in FROM,TO (elsewhere one conditional pass: faster); 0,1 = every step");
  b.add("clip", &SamplerOptions::clip, "clamp the predicted clean image to the pixel range at every step");
}

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
    throw UserError(ExitCode::kDataError,
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

class SampleStage final : public Stage {
 public:
  std::string name() const override { return "sample"; }
  std::string summary() const override { return "generate the synthetic images of the balance plan with the trained denoiser"; }
  std::vector<std::string> option_scopes() const override { return {"sample", "seed", "precision"}; }
  std::vector<std::string> inputs(const Context& ctx) const override {
    std::vector<std::string> in{"subsample/classes.json", "subsample/manifest.jsonl", "train/model.pt", "train/model.json"};
    if (ctx.options<SampleOptions>().min_confidence > 0) in.push_back("classifier/model.pt");
    return in;
  }
  std::vector<std::string> outputs(const Context& ctx) const override {
    const auto shard = shard_of_invocation(ctx);
    std::vector<std::string> out{"sample/plan.json"};
    // Unsharded after a complete array run: the array's journals are this run's result.
    const auto journals = find_journals(ctx.dir("sample"));
    if (shard.count == 1 && !journals.empty() && all_sharded(journals)) {
      for (const auto& j : journals) out.push_back("sample/" + j.second.filename().string());
      return out;
    }
    out.push_back("sample/" + journal_path("", shard).filename().string());
    return out;
  }
  bool runs_alongside_others(const Context& ctx) const override { return shard_of_invocation(ctx).count > 1; }
  // Every kept image of the journals this invocation vouches for, by size and hash (small files).
  std::string verify(const Context& ctx) const override {
    SamplePlan plan;
    try {
      plan = read_sample_plan(ctx.dir("sample") / "plan.json");
    } catch (const UserError&) {
      return "output missing or modified: sample/plan.json";
    }
    std::vector<fs::path> journals;
    for (const auto& rel : outputs(ctx)) {
      if (rel != "sample/plan.json") journals.push_back(ctx.work() / rel);
    }
    return damaged_sample(ctx.dir("sample"), plan, journals);
  }

  void run(Context& ctx) override {
    const auto so = ctx.options<SampleOptions>();
    const auto mo = ctx.options<SamplerOptions>();
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

    const int threads = ctx.global().threads > 0 ? ctx.global().threads : static_cast<int>(std::thread::hardware_concurrency());
    if (threads > 0) torch::set_num_threads(threads);
    const auto device = resolve_device(ctx.global().device);
    const auto precision = resolve_precision(ctx.global().precision, device);
    const auto model_pt = ctx.dir("train") / "model.pt";
    auto loaded = load_denoiser(model_pt, ctx.dir("train") / "model.json", device);
    const auto& meta = loaded.meta;
    std::vector<std::string> plan_names;
    for (const auto& c : plan.classes) plan_names.push_back(c.name);
    if (plan_names != meta.class_names) {
      throw UserError(ExitCode::kDataError, fmt::format("the denoiser {} was trained on other classes than subsample/classes.json "
                                                        "lists; rerun `augment train` (it goes stale by itself when its inputs change)",
                                                        model_pt.string()));
    }
    const bool cfg = meta.model.conditioning == "cfg";
    if (!cfg && mo.guidance != SamplerOptions{}.guidance && mo.guidance != 1.0) {
      ctx.report().warn(fmt::format("sample.guidance is ignored: the model uses {} conditioning, not cfg", meta.model.conditioning));
    }

    const auto [guided_from, guided_to] = guidance_interval_of(mo);
    SamplerSettings sampler_settings{mo.sampler, static_cast<int>(mo.steps), mo.eta, mo.clip};
    std::unique_ptr<Sampler> sampler;
    try {
      sampler = make_sampler(sampler_settings);
    } catch (const std::invalid_argument& e) {
      throw UserError(ExitCode::kConfig, e.what());
    }
    const GaussianDiffusion diffusion(meta.diffusion);
    SamplingSettings settings;
    settings.sampler = mo.sampler;
    settings.steps = sampler->evaluations(diffusion);
    settings.eta = mo.sampler == "ddim" ? mo.eta : 0.0;
    settings.clip = mo.clip;
    settings.guidance = cfg ? mo.guidance : 0.0;
    settings.guided_from = cfg ? guided_from : 0.0;
    settings.guided_to = cfg ? guided_to : 1.0;
    settings.conditioning = meta.model.conditioning;
    settings.checkpoint = weights_fingerprint(loaded.model);
    settings.resolution = meta.model.resolution;
    settings.channels = meta.model.in_channels;
    const auto job = sampling_job_for(ctx, settings);

    ClassifierNet judge{nullptr};
    if (job.min_confidence > 0) {
      judge = load_frozen_classifier(ctx.dir("classifier") / "model.pt", meta.class_names, settings.resolution, settings.channels,
                                     device);
    }
    ModelCall call;
    call.precision = precision;
    call.channels_last = device.is_cuda() || precision != torch::kFloat32;
    call.guidance = cfg ? mo.guidance : 1.0;
    const double T = static_cast<double>(meta.diffusion.steps);
    call.set_guided_interval(guided_from, guided_to, T);
    if (call.channels_last) loaded.model->to_channels_last();
    const bool guided = cfg && call.guidance != 1.0;
    ctx.report().info(fmt::format("sampling shard {} with {} ({} denoiser evaluations per image{}), {} conditioning, on {}",
                                  shard.label(), mo.sampler, settings.steps, guided ? fmt::format(", guidance {} in one 2x batch{}", call.guidance,
                                                                                                   guided_from > 0.0 || guided_to < 1.0
                                                                                                       ? fmt::format(" for t/T in [{:g}, {:g}]", guided_from, guided_to)
                                                                                                       : "")
                                                                                     : "",
                                  meta.model.conditioning, describe(device, precision)));

    GenerateFn generate = [&](const std::vector<SampleRequest>& requests) {
      std::vector<std::uint64_t> seeds;
      std::vector<std::int64_t> labels;
      for (const auto& r : requests) {
        seeds.push_back(r.seed);
        labels.push_back(r.label);
      }
      const auto y = torch::tensor(labels, torch::kInt64).to(device);
      NoiseSource noise(seeds, settings.channels, settings.resolution, device);
      const auto x = sampler->run(diffusion, denoiser_model_fn(loaded.model, y, call), noise, [] { check_stop(); });
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
    const auto summary = run_sampling(job, plan, generate, ctx.report());
    if (summary.generated > 0) {
      ctx.report().info(fmt::format("generated {} images in {} ({:.2f} images/s)", summary.generated, format_duration(summary.seconds),
                                    summary.generated / std::max(summary.seconds, 1e-9)));
    }
  }
};

}  // namespace

std::pair<double, double> guidance_interval_of(const SamplerOptions& mo) {
  double guided_from = 0.0, guided_to = 1.0;
  const auto& iv = mo.guidance_interval;
  bool ok = iv.size() == 2;
  try {
    if (ok) {
      guided_from = std::stod(iv[0]);
      guided_to = std::stod(iv[1]);
    }
  } catch (const std::exception&) {
    ok = false;
  }
  if (!ok || !(guided_from >= 0.0 && guided_from <= guided_to && guided_to <= 1.0)) {
    throw UserError(ExitCode::kConfig, fmt::format("sample.guidance_interval must be FROM,TO with 0 <= FROM <= TO <= 1 (shares of the "
                                                   "noise schedule), e.g. 0,1 or 0.2,0.9; got '{}'",
                                                   fmt::join(iv, ",")));
  }
  return {guided_from, guided_to};
}

double denoiser_passes_per_image(const SamplerOptions& mo, int diffusion_steps, bool guided) {
  const auto steps = sampling_timesteps(diffusion_steps, mo.sampler == "ddpm" ? diffusion_steps : static_cast<int>(mo.steps));
  double passes = static_cast<double>(steps.size());
  if (!guided || mo.guidance == 1.0) return passes;
  const auto [from, to] = guidance_interval_of(mo);
  ModelCall call;
  call.set_guided_interval(from, to, diffusion_steps);
  for (const int t : steps) passes += call.guides_at(t) ? 1.0 : 0.0;  // the unconditional half
  return passes;
}

std::unique_ptr<Stage> make_sample_stage() { return std::make_unique<SampleStage>(); }

}  // namespace augment
