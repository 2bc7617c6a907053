#include "stages/sample_options.h"

#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "manifests/sample_plan.h"
#include "models/guidance.h"
#include "models/sampler.h"
#include "pipeline/base/errors.h"
#include "stages/sample_plan.h"

namespace augment {

void SampleOptions::bind(OptionBinder<SampleOptions>& b) {
  b.add("policy", &SampleOptions::policy,
        "synthetic images per class: balance=max (every class up to the largest class's train count), per_class=N "
        "(N in total per class, real train + synthetic), ratio=r (r synthetic per real train image) or synthetic=N (N "
        "synthetic "
        "images of every class, e.g. for a synthetic-only set or a quick look at each class)",
        Check<std::string>([](const std::string& v) -> std::string {
          try {
            parse_sample_policy(v);
            return "";
          } catch (const std::invalid_argument& e) {
            return e.what();
          }
        }),
        kField.with_alias("policy"));
  b.add("batch_size", &SampleOptions::batch_size, "images generated per model call", in_range<std::int64_t>(1, 65536),
        kTransient);
  b.add("shard", &SampleOptions::shard,
        "generate only shard K of N (K/N, K from 0); unset: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT when in a SLURM "
        "array",
        Check<std::string>([](const std::string& v) -> std::string {
          if (v.empty()) return "";
          try {
            parse_shard(v);
            return "";
          } catch (const std::invalid_argument& e) {
            return e.what();
          }
        }),
        kField.with_alias("shard").as_transient());
  b.add("min_confidence", &SampleOptions::min_confidence,
        "keep a sample only when the frozen classifier gives its class at least this probability (0: no filter)",
        in_range(0.0, 1.0), kField.with_alias("min-confidence"));
  b.add("max_tries", &SampleOptions::max_tries, "with the filter: tries per planned image before it is given up",
        in_range<std::int64_t>(1, 1000), kField.with_alias("max-tries"));
  b.add("sampler", &SampleOptions::sampler,
        "ddpm (ancestral, every diffusion step), ddim (sample.steps steps, sample.eta noise) or dpmpp2m (DPM-Solver++ "
        "2M, "
        "good at 10-25 steps)");
  b.add("steps", &SampleOptions::steps, "denoiser evaluations per image for ddim and dpmpp2m",
        in_range<std::int64_t>(1, 100000));
  b.add("eta", &SampleOptions::eta, "ddim: 0 deterministic, 1 as noisy as DDPM", in_range(0.0, 1.0));
  b.add("guidance", &SampleOptions::guidance,
        "cfg models: classifier-free guidance scale (1 = conditional prediction only, larger = more class-typical, "
        "less varied)",
        in_range(0.0, 50.0));
  b.add("guidance_interval", &SampleOptions::guidance_interval,
        "cfg models: guide only where the noise level t/T lies in FROM,TO (elsewhere one conditional pass: faster); "
        "0,1 = every step");
  b.add("clip", &SampleOptions::clip, "clamp the predicted clean image to the pixel range at every step");
}

std::pair<double, double> guidance_interval_of(const SampleOptions& mo) {
  const auto& iv = mo.guidance_interval;
  if (iv.size() != 2 || !(iv[0] >= 0.0 && iv[0] <= iv[1] && iv[1] <= 1.0)) {
    throw UserError(ExitCode::kConfig,
                    fmt::format("sample.guidance_interval must be FROM,TO with 0 <= FROM <= TO <= 1 (shares of the "
                                "noise schedule), e.g. 0,1 or 0.2,0.9; got '{}'",
                                format_value(iv)));
  }
  return {iv[0], iv[1]};
}

double denoiser_passes_per_image(const SampleOptions& mo, int diffusion_steps, bool guided) {
  const auto steps = sampling_timesteps(
      diffusion_steps, mo.sampler == SamplerKind::kDdpm ? diffusion_steps : static_cast<int>(mo.steps));
  double passes = static_cast<double>(steps.size());
  if (!guided || mo.guidance == 1.0) return passes;
  const auto [from, to] = guidance_interval_of(mo);
  ModelCall call;
  call.set_guided_interval(from, to, diffusion_steps);
  for (const int t : steps) passes += call.guides_at(t) ? 1.0 : 0.0;  // the unconditional half
  return passes;
}

}  // namespace augment
