// The generation driver of `augment sample`: takes this shard's planned images that are not done
// yet, asks the model for them in batches (through a GenerateFn, so it knows no model), applies
// the confidence filter, and writes PNGs and journal lines through the sample store.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "manifests/sample_store.h"

namespace augment {

class Context;
class Reporter;

// One image the generator must produce: all its randomness must come from `seed`.
struct SampleRequest {
  int label = 0;
  std::int64_t index = 0;
  std::uint64_t seed = 0;
  int attempt = 0;  // 0 for the first try; > 0 for retries of the confidence filter
};

struct GeneratedImage {
  std::vector<std::uint8_t> pixels;  // resolution*resolution*channels bytes, row-major HWC, RGB order or gray
  std::optional<double> confidence;  // frozen classifier's probability of the requested class, when computed
};

// Called with batches of at most SamplingJob::batch_size requests; returns one image per request,
// in the same order. May throw StopRequested (or anything else): finished batches are kept.
using GenerateFn = std::function<std::vector<GeneratedImage>(const std::vector<SampleRequest>&)>;

struct SamplingJob {
  std::filesystem::path dir;  // work/sample
  std::uint64_t run_seed = 0;
  ShardSpec shard;
  std::int64_t batch_size = 64;
  double min_confidence = 0.0;  // 0: no filter
  int max_tries = 1;
  SamplingSettings settings;
};

struct ClassSamplingStats {
  std::string name;
  std::int64_t planned = 0;   // items of this shard
  std::int64_t reused = 0;    // already done by an earlier run
  std::int64_t accepted = 0;  // done now and kept
  std::int64_t rejected = 0;  // done now and given up
  std::int64_t tries = 0;     // generator calls for this class, images
};

struct SamplingSummary {
  std::vector<ClassSamplingStats> classes;  // in label order
  std::int64_t generated = 0;               // images the generator produced in this run
  double seconds = 0.0;
};

// Generates this shard's items that are not done yet, in batches, writing PNGs and journal lines;
// checks check_stop() between batches. Prints progress (images/s, ETA) and, with the filter, the
// acceptance rate per class.
SamplingSummary run_sampling(const SamplingJob& job, const SamplePlan& plan, const GenerateFn& generate,
                             Reporter& report);

class Context;
// The job of this invocation: work/sample, the run seed, the sample.* options and the shard
// (--shard, else SLURM's array variables). `settings` come from the model.
SamplingJob sampling_job_for(const Context& ctx, const SamplingSettings& settings);

}  // namespace augment
