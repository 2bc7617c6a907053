// work/sample/plan.json: how many synthetic images each class gets, and the global order of the
// planned items that shards split round robin. Made by stages/sample_plan; read by every stage
// after sampling.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace augment {

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

void write_sample_plan(const std::filesystem::path& path, const SamplePlan& plan);
// Throws UserError naming the file when it is missing or damaged.
SamplePlan read_sample_plan(const std::filesystem::path& path);

struct ShardSpec {
  int index = 0;              // K, 0-based
  int count = 1;              // N
  std::string label() const;  // "K-of-N", as in journal names
};

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
