#include "manifests/sample_plan.h"

#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

using nlohmann::json;

std::int64_t SamplePlan::total_synthetic() const {
  std::int64_t n = 0;
  for (const auto& c : classes) n += c.synthetic;
  return n;
}

void write_sample_plan(const fs::path& path, const SamplePlan& plan) {
  json classes = json::array();
  for (const auto& c : plan.classes) {
    classes.push_back({{"name", c.name},
                       {"label", c.label},
                       {"real_train", c.real_train},
                       {"synthetic", c.synthetic},
                       {"total", c.real_train + c.synthetic}});
  }
  const json j = {{"policy", plan.policy}, {"classes", classes}, {"total_synthetic", plan.total_synthetic()}};
  write_text_atomically(path, j.dump(2) + "\n");
}

SamplePlan read_sample_plan(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw UserError(ExitCode::kNoInput,
                    fmt::format("no samples: run `augment sample` first ({} is missing)", path.string()));
  }
  try {
    const auto j = json::parse(read_text_file(path));
    SamplePlan plan;
    plan.policy = j.at("policy").get<std::string>();
    for (const auto& c : j.at("classes")) {
      ClassPlan cp;
      cp.name = c.at("name").get<std::string>();
      cp.label = c.at("label").get<int>();
      cp.real_train = c.at("real_train").get<std::int64_t>();
      cp.synthetic = c.at("synthetic").get<std::int64_t>();
      if (cp.label != static_cast<int>(plan.classes.size()) || cp.synthetic < 0)
        throw std::runtime_error("labels out of order");
      plan.classes.push_back(cp);
    }
    return plan;
  } catch (const std::exception& e) {
    throw UserError(ExitCode::kDataError, fmt::format("{} is damaged ({}); rerun `augment sample` to write it again",
                                                      path.string(), e.what()));
  }
}

std::string ShardSpec::label() const { return fmt::format("{}-of-{}", index, count); }

std::vector<SampleItem> plan_items(const SamplePlan& plan) {
  std::vector<SampleItem> items;
  items.reserve(static_cast<std::size_t>(plan.total_synthetic()));
  for (const auto& c : plan.classes) {
    for (std::int64_t i = 0; i < c.synthetic; ++i) items.push_back({c.label, i});
  }
  return items;
}

std::vector<SampleItem> shard_items(const SamplePlan& plan, const ShardSpec& shard) {
  const auto all = plan_items(plan);
  std::vector<SampleItem> mine;
  for (std::size_t p = static_cast<std::size_t>(shard.index); p < all.size();
       p += static_cast<std::size_t>(shard.count))
    mine.push_back(all[p]);
  return mine;
}

int shard_of(const SamplePlan& plan, const SampleItem& item, int shard_count) {
  std::int64_t position = 0;
  for (const auto& c : plan.classes) {
    if (c.label == item.label) return static_cast<int>((position + item.index) % shard_count);
    position += c.synthetic;
  }
  return -1;
}

}  // namespace augment
