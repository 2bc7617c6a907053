#include "stages/sample_plan.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "manifests/image_cache.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/context.h"
#include "pipeline/work_paths.h"

namespace augment {

using nlohmann::json;

SamplePolicy parse_sample_policy(const std::string& text) {
  const auto eq = text.find('=');
  const std::string accepted = "accepted: balance=max, per_class=N (N >= 1), ratio=r (r >= 0) or synthetic=N (N >= 1)";
  if (eq == std::string::npos) throw std::invalid_argument("'" + text + "' is not a policy; " + accepted);
  const std::string kind = text.substr(0, eq), value = text.substr(eq + 1);
  SamplePolicy p;
  p.text = text;
  if (kind == "balance" && value == "max") {
    p.kind = SamplePolicy::Kind::kBalanceMax;
    return p;
  }
  if (kind == "per_class" || kind == "synthetic") {
    std::int64_t n = 0;
    try {
      parse_value(value, n);
    } catch (const std::invalid_argument&) {
      n = 0;
    }
    if (n < 1) throw std::invalid_argument(kind + " needs a whole number >= 1, got '" + value + "'");
    if (n > kMaxSyntheticPerClass) {
      throw std::invalid_argument(
          fmt::format("{}={} asks for more than {} images per class, more than any disk or memory holds; "
                      "choose a smaller N",
                      kind, value, kMaxSyntheticPerClass));
    }
    p.kind = kind == "per_class" ? SamplePolicy::Kind::kPerClass : SamplePolicy::Kind::kSynthetic;
    p.per_class = n;
    return p;
  }
  if (kind == "ratio") {
    double r = -1;
    try {
      parse_value(value, r);
    } catch (const std::invalid_argument&) {
      r = -1;
    }
    if (r < 0 || r > kMaxRatio) {
      throw std::invalid_argument(fmt::format("ratio needs a number between 0 and {}, got '{}'", kMaxRatio, value));
    }
    p.kind = SamplePolicy::Kind::kRatio;
    p.ratio = r;
    return p;
  }
  throw std::invalid_argument("'" + text + "' is not a policy; " + accepted);
}

SamplePlan make_sample_plan(const ClassList& classes, const std::vector<std::int64_t>& train_counts,
                            const SamplePolicy& policy) {
  if (train_counts.size() != classes.names.size())
    throw std::logic_error("make_sample_plan: one train count per class expected");
  SamplePlan plan;
  plan.policy = policy.text;
  std::int64_t largest = 0;
  for (auto n : train_counts) largest = std::max(largest, n);
  for (std::size_t c = 0; c < classes.names.size(); ++c) {
    ClassPlan cp;
    cp.name = classes.names[c];
    cp.label = static_cast<int>(c);
    cp.real_train = train_counts[c];
    switch (policy.kind) {
      case SamplePolicy::Kind::kBalanceMax: cp.synthetic = largest - cp.real_train; break;
      // A class already above the target keeps its real images; nothing is removed.
      case SamplePolicy::Kind::kPerClass:
        cp.synthetic = std::max<std::int64_t>(0, policy.per_class - cp.real_train);
        break;
      case SamplePolicy::Kind::kSynthetic: cp.synthetic = policy.per_class; break;
      case SamplePolicy::Kind::kRatio:
        cp.synthetic = static_cast<std::int64_t>(std::llround(policy.ratio * static_cast<double>(cp.real_train)));
        break;
    }
    plan.classes.push_back(cp);
  }
  return plan;
}

SamplePlan plan_for_work(const fs::path& work, const SamplePolicy& policy) {
  const auto classes = read_class_list(work / work_file::kSubsampleClasses);
  const auto rows = read_records_jsonl(work / work_file::kSubsampleManifest);
  std::vector<std::int64_t> train(classes.names.size(), 0);
  for (const auto& r : rows) {
    if (r.split == "train" && r.label >= 0 && static_cast<std::size_t>(r.label) < train.size())
      ++train[static_cast<std::size_t>(r.label)];
  }
  return make_sample_plan(classes, train, policy);
}

std::string plan_table(const SamplePlan& plan) {
  std::string t = fmt::format("sampling plan ({}):\n{:<28} {:>5} {:>10} {:>10} {:>10}\n", plan.policy, "class", "label",
                              "real train", "synthetic", "total");
  std::int64_t real = 0, syn = 0;
  for (const auto& c : plan.classes) {
    t += fmt::format("{:<28} {:>5} {:>10} {:>10} {:>10}\n", c.name, c.label, c.real_train, c.synthetic,
                     c.real_train + c.synthetic);
    real += c.real_train;
    syn += c.synthetic;
  }
  t += fmt::format("{:<28} {:>5} {:>10} {:>10} {:>10}\n", "total", plan.classes.size(), real, syn, real + syn);
  return t;
}

void check_plan_fits(const SamplePlan& plan, const PlanFootprint& room, const std::string& work) {
  const auto total = plan.total_synthetic();
  if (total <= 0) return;
  const double n = static_cast<double>(total);
  const double memory = n * kPlannedImageMemoryBytes;
  const double disk = n * (room.image_bytes * kPngShareOfPixels + kJournalLineBytes);
  auto gib = [](double bytes) { return bytes / (1024.0 * 1024.0 * 1024.0); };
  if (room.memory_bytes > 0 && memory > 0.5 * room.memory_bytes) {
    throw UserError(
        ExitCode::kConfig,
        fmt::format(
            "sample.policy {} plans {} synthetic images; tracking them needs about {:.1f} GiB of memory and this "
            "machine has {:.1f} GiB: choose a smaller policy",
            plan.policy, total, gib(memory), gib(room.memory_bytes)));
  }
  if (room.disk_free_bytes > 0 && disk > room.disk_free_bytes) {
    throw UserError(
        ExitCode::kConfig,
        fmt::format(
            "sample.policy {} plans {} synthetic images, at least {:.1f} GiB in {} (and as much again in --output), "
            "but its disk has {:.1f} GiB free: choose a smaller policy or free disk space",
            plan.policy, total, gib(disk), work, gib(room.disk_free_bytes)));
  }
}

PlanFootprint plan_footprint_here(const fs::path& work, std::int64_t image_bytes) {
  PlanFootprint room;
  room.image_bytes = static_cast<double>(image_bytes);
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) room.memory_bytes = static_cast<double>(pages) * static_cast<double>(page);
  struct statvfs st;
  if (::statvfs(work.c_str(), &st) == 0)
    room.disk_free_bytes = static_cast<double>(st.f_bavail) * static_cast<double>(st.f_frsize);
  return room;
}

SamplePlan prepare_sample_plan(Context& ctx) {
  const auto o = ctx.options<SampleOptions>();
  const auto plan = plan_for_work(ctx.work(), parse_sample_policy(o.policy));
  const auto info = read_cache_info(ctx.path(work_file::kCacheTrain));
  check_plan_fits(
      plan,
      plan_footprint_here(ctx.work(), static_cast<std::int64_t>(info.resolution) * info.resolution * info.channels),
      ctx.work().string());
  ctx.report().print(plan_table(plan));
  write_sample_plan(ctx.path(work_file::kSamplePlan), plan);
  return plan;
}

std::uint64_t item_seed(std::uint64_t run_seed, const std::string& class_name, std::int64_t index, int attempt) {
  // Try 0 has the seed of the unfiltered run, so turning the filter on keeps every image it accepts.
  std::string key = "sample\x1f" + class_name + "\x1f" + std::to_string(index);
  if (attempt > 0) key += "\x1f" + std::to_string(attempt);
  return hash64(key, run_seed) >> 1;
}

ShardSpec parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  std::int64_t k = -1, n = 0;
  bool ok = slash != std::string::npos;
  if (ok) {
    try {
      parse_value(text.substr(0, slash), k);
      parse_value(text.substr(slash + 1), n);
    } catch (const std::invalid_argument&) {
      ok = false;
    }
  }
  if (!ok || n < 1 || n > 100000 || k < 0 || k >= n) {
    throw std::invalid_argument("'" + text + "' is not a shard; use K/N with 0 <= K < N (e.g. 0/4 ... 3/4)");
  }
  return ShardSpec{static_cast<int>(k), static_cast<int>(n)};
}

ShardSpec resolve_shard(const std::string& option, const std::function<const char*(const char*)>& getenv) {
  if (!option.empty()) return parse_shard(option);
  const char* id = getenv("SLURM_ARRAY_TASK_ID");
  const char* count = getenv("SLURM_ARRAY_TASK_COUNT");
  if (!id || !count) return ShardSpec{};
  const char* min = getenv("SLURM_ARRAY_TASK_MIN");
  std::int64_t k = 0, n = 0, lo = 0;
  try {
    parse_value(id, k);
    parse_value(count, n);
    if (min) parse_value(min, lo);
  } catch (const std::invalid_argument& e) {
    throw UserError(ExitCode::kConfig,
                    fmt::format("SLURM array variables are not numbers ({}); pass --shard K/N", e.what()));
  }
  // Arrays may start at 1 (--array=1-8): the shard is the task's position in the array.
  const std::string text = fmt::format("{}/{}", k - lo, n);
  try {
    return parse_shard(text);
  } catch (const std::invalid_argument&) {
    throw UserError(
        ExitCode::kConfig,
        fmt::format("SLURM_ARRAY_TASK_ID={} (min {}) of SLURM_ARRAY_TASK_COUNT={} does not give a shard 0..N-1; use a "
                    "contiguous --array=0-{} or pass --shard K/N",
                    k, lo, n, n - 1));
  }
}

}  // namespace augment
