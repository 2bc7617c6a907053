// What `augment sample` generates, independent of the model: how many synthetic images each class
// gets (the policy), the seed of every image, and which shard generates which image.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "manifests/image_record.h"
#include "pipeline/config.h"

namespace augment {

class Context;

// The `sample.*` options of the plan and the sample store. The model's own sampling options
// (sampler, steps, guidance) live with the model code.
struct SampleOptions {
  static constexpr const char* kGroup = "sample";
  std::string policy = "balance=max";  // balance=max | per_class=N | ratio=r
  std::int64_t batch_size = 64;        // images per call of the generator
  std::string shard;                   // K/N (0-based K); empty: SLURM array variables, else 0/1
  double min_confidence = 0.0;         // classifier filter: keep a sample only at this confidence (0: off)
  std::int64_t max_tries = 4;          // tries per planned image when filtering
  static void bind(OptionBinder<SampleOptions>& b);
};

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
// Parses "balance=max", "per_class=N", "ratio=r" or "synthetic=N"; throws std::invalid_argument saying what is accepted.
SamplePolicy parse_sample_policy(const std::string& text);

struct ClassPlan {
  std::string name;
  int label = 0;
  std::int64_t real_train = 0;  // real images in the train split
  std::int64_t synthetic = 0;   // images to generate
};

struct SamplePlan {
  std::string policy;
  std::vector<ClassPlan> classes;  // in label order
  std::int64_t total_synthetic() const;
};

// `train_counts[label]` real train images per class.
SamplePlan make_sample_plan(const ClassList& classes, const std::vector<std::int64_t>& train_counts, const SamplePolicy& policy);
// The plan for a work dir: subsample/classes.json and the train rows of subsample/manifest.jsonl.
SamplePlan plan_for_work(const std::filesystem::path& work, const SamplePolicy& policy);
std::string plan_table(const SamplePlan& plan);
void write_sample_plan(const std::filesystem::path& path, const SamplePlan& plan);
// Throws UserError naming the file when it is missing or damaged.
SamplePlan read_sample_plan(const std::filesystem::path& path);
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

struct ShardSpec {
  int index = 0;  // K, 0-based
  int count = 1;  // N
  std::string label() const;  // "K-of-N", as in journal names
};
// Parses "K/N" (0 <= K < N); throws std::invalid_argument.
ShardSpec parse_shard(const std::string& text);
// The option when set; else SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT
// when running in a SLURM array; else 0/1. `getenv` is injectable for tests.
ShardSpec resolve_shard(const std::string& option, const std::function<const char*(const char*)>& getenv);

struct SampleItem {
  int label = 0;
  std::int64_t index = 0;
  bool operator==(const SampleItem& o) const { return label == o.label && index == o.index; }
  bool operator<(const SampleItem& o) const { return label != o.label ? label < o.label : index < o.index; }
};
// Every planned item in the global order (class by class, index ascending).
std::vector<SampleItem> plan_items(const SamplePlan& plan);
// Shard K's part: items at positions K, K+N, K+2N, ... of the global order (round robin, so each
// shard gets a share of every class).
std::vector<SampleItem> shard_items(const SamplePlan& plan, const ShardSpec& shard);
// Which shard the global order assigns `item` to.
int shard_of(const SamplePlan& plan, const SampleItem& item, int shard_count);

}  // namespace augment
