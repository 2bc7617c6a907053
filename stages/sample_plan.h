// What `augment sample` generates, independent of the model: how many synthetic images each class
// gets (the policy), the seed of every image, and which shard generates which image.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "manifests/image_record.h"
#include "manifests/sample_plan.h"
#include "stages/sample_options.h"

namespace augment {

class Context;

struct SamplePolicy {
  enum class Kind { kBalanceMax, kPerClass, kRatio, kSynthetic };
  Kind kind = Kind::kBalanceMax;
  std::int64_t per_class = 0;  // per_class=N and synthetic=N
  double ratio = 0.0;
  std::string text;  // as given, for the plan and the dataset card
};
// Bounds checked when the option is read: beyond them no disk or memory holds the plan.
inline constexpr std::int64_t kMaxSyntheticPerClass = 10'000'000;
inline constexpr double kMaxRatio = 10'000.0;
// Parses "balance=max", "per_class=N", "ratio=r" or "synthetic=N"; throws std::invalid_argument saying what is
// accepted.
SamplePolicy parse_sample_policy(const std::string& text);

// `train_counts[label]` real train images per class.
SamplePlan make_sample_plan(const ClassList& classes, const std::vector<std::int64_t>& train_counts,
                            const SamplePolicy& policy);
// The plan for a work dir: subsample/classes.json and the train rows of subsample/manifest.jsonl.
SamplePlan plan_for_work(const std::filesystem::path& work, const SamplePolicy& policy);
std::string plan_table(const SamplePlan& plan);
// What a plan needs per image, at least: a compressed PNG is rarely under a tenth of its pixels,
// a journal line is about 600 bytes, and sampling keeps about 1 KiB per planned image in memory.
inline constexpr double kPngShareOfPixels = 0.1;
inline constexpr double kJournalLineBytes = 600.0;
inline constexpr double kPlannedImageMemoryBytes = 1024.0;
struct PlanFootprint {
  double image_bytes = 0;      // pixels of one image (resolution² × channels)
  double memory_bytes = 0;     // physical memory (0: unknown, not checked)
  double disk_free_bytes = 0;  // free space where the work dir is (0: unknown, not checked)
};
PlanFootprint plan_footprint_here(const std::filesystem::path& work, std::int64_t image_bytes);
// Throws UserError(kConfig) naming sample.policy when the plan cannot fit in half the memory or
// on the work dir's disk.
void check_plan_fits(const SamplePlan& plan, const PlanFootprint& room, const std::string& work);
// Computes the plan from the work dir and the options, checks that it fits, prints it and writes
// work/sample/plan.json.
SamplePlan prepare_sample_plan(Context& ctx);

// Seed of try `attempt` (0-based) of synthetic image `index` of class `class_name`: a function of
// these and the run seed only, so batch size, sharding and resuming cannot change an image. The
// class enters by name so adding another class does not change this one's images. 63 bits, so
// the value survives JSON readers and signed 64-bit columns.
std::uint64_t item_seed(std::uint64_t run_seed, const std::string& class_name, std::int64_t index, int attempt = 0);

// Parses "K/N" (0 <= K < N); throws std::invalid_argument.
ShardSpec parse_shard(const std::string& text);
// The option when set; else SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT
// when running in a SLURM array; else 0/1. `getenv` is injectable for tests.
ShardSpec resolve_shard(const std::string& option, const std::function<const char*(const char*)>& getenv);

}  // namespace augment
