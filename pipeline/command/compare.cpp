#include "pipeline/command/compare.h"
#include "pipeline/work_paths.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "manifests/sample_store.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/context.h"
#include "pipeline/runner.h"
#include "stages/evaluate_figures.h"
#include "stages/sample_plan.h"

namespace augment {

using nlohmann::json;

void CompareOptions::bind(OptionBinder<CompareOptions>& b) {
  b.add("methods", &CompareOptions::methods,
        "conditioning methods to compare (train.conditioning values): none, cbn, ac, cfg",
        Check<std::vector<std::string>>([](const std::vector<std::string>& v) {
          if (v.empty()) return std::string("name at least one method");
          for (const auto& m : v) {
            if (m != "none" && m != "cbn" && m != "ac" && m != "cfg")
              return "unknown method '" + m + "' (accepted: none, cbn, ac, cfg)";
          }
          return std::string();
        }));
  b.add("images_per_class", &CompareOptions::images_per_class,
        "synthetic images per class in each method's picture row", in_range<std::int64_t>(1, 16));
}

namespace {

bool same_file(const fs::path& a, const fs::path& b) {
  struct stat sa, sb;
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void link_or_copy(const fs::path& src, const fs::path& dst) {
  if (same_file(src, dst)) return;
  ensure_directory(dst.parent_path());
  std::error_code ec;
  fs::remove(dst, ec);
  if (::link(src.c_str(), dst.c_str()) == 0) return;
  if (const int err = copy_file_new(src, dst); err != 0) {
    throw UserError(ExitCode::kIoError, fmt::format("cannot copy {} to {}: {}{}", src.string(), dst.string(),
                                                    std::strerror(err), disk_full_hint(err)));
  }
}

json read_json_or_null(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return nullptr;
  try {
    return json::parse(read_text_file(path));
  } catch (const std::exception&) {
    return nullptr;
  }
}

// j[a][b]... or null.
json at(const json& j, std::initializer_list<const char*> path) {
  const json* p = &j;
  for (const char* key : path) {
    if (!p->is_object() || !p->contains(key)) return nullptr;
    p = &(*p)[key];
  }
  return *p;
}

std::string pct(const json& v) { return v.is_number() ? fmt::format("{:.1f}%", 100 * v.get<double>()) : "–"; }
std::string num(const json& v, int decimals = 3) {
  return v.is_number() ? fmt::format("{:.{}f}", v.get<double>(), decimals) : "–";
}
std::string pct_ms(const json& v, bool signed_value = false) {
  if (!at(v, {"mean"}).is_number()) return "–";
  const double m = 100 * v["mean"].get<double>();
  const std::string mean = signed_value ? fmt::format("{:+.1f}", m) : fmt::format("{:.1f}%", m);
  return at(v, {"std"}).is_number() ? fmt::format("{} ± {:.1f}", mean, 100 * v["std"].get<double>()) : mean;
}
std::string minutes(const json& v) { return v.is_number() ? fmt::format("{:.1f} min", v.get<double>() / 60) : "–"; }

// The first `n` synthetic images of each class of a method's sample store, as RGB/gray tiles.
std::vector<std::vector<cv::Mat>> first_samples(const fs::path& sample_dir, int n) {
  const auto plan = read_sample_plan(sample_dir / "plan.json");
  const auto merged = merge_journals(sample_dir, plan);
  std::vector<std::vector<cv::Mat>> out(plan.classes.size());
  const int res = merged.settings.resolution, ch = merged.settings.channels;
  std::vector<std::uint8_t> png;
  for (const auto& e : merged.accepted) {
    auto& tiles = out[static_cast<std::size_t>(e.label)];
    if (static_cast<int>(tiles.size()) >= n || !read_file_bytes(sample_dir / e.file, png)) continue;
    cv::Mat m(res, res, ch == 1 ? CV_8UC1 : CV_8UC3);
    if (decode_png(png, res, ch, m.data).empty()) tiles.push_back(m);
  }
  return out;
}

}  // namespace

void share_stage_outputs(const fs::path& from, const fs::path& to, const std::vector<std::string>& stages) {
  for (const auto& stage : stages) {
    const auto src_dir = from / stage;
    std::error_code ec;
    if (!fs::is_directory(src_dir, ec)) continue;
    for (auto it = fs::recursive_directory_iterator(src_dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      const auto name = it->path().filename().string();
      // Resumable training state and temp files belong to the main run only.
      if (name == "checkpoint" || name.find(kTempMarker) != std::string::npos) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file()) link_or_copy(it->path(), to / fs::relative(it->path(), from));
    }
    const auto record = from / "records" / (stage + ".json");
    if (fs::is_regular_file(record, ec)) link_or_copy(record, to / "records" / (stage + ".json"));
  }
}

json compare_table_json(const fs::path& compare_dir, const std::vector<std::string>& methods) {
  json rows = json::array();
  for (const auto& m : methods) {
    const auto dir = compare_dir / m;
    const auto metrics = read_json_or_null(dir / work_file::kEvaluateMetrics);
    const auto down = at(metrics, {"downstream"});
    rows.push_back(
        {{"method", m},
         {"conditional_accuracy", at(metrics, {"conditional_accuracy", "accuracy"})},
         {"conditional_balanced_accuracy", at(metrics, {"conditional_accuracy", "balanced_accuracy"})},
         {"conditional_accuracy_independent", at(down, {"independent_conditional_accuracy", "accuracy", "mean"})},
         {"frechet_distance", at(metrics, {"frechet_distance", "synthetic_vs_test", "overall"})},
         {"frechet_distance_floor", at(metrics, {"frechet_distance", "train_vs_test", "overall"})},
         {"classifier_score", at(metrics, {"classifier_score", "synthetic"})},
         {"precision", at(metrics, {"precision_recall", "synthetic_vs_test", "precision"})},
         {"recall", at(metrics, {"precision_recall", "synthetic_vs_test", "recall"})},
         {"downstream_real", at(down, {"variants", "real", "balanced_accuracy"})},
         {"downstream_augmented", at(down, {"variants", "augmented", "balanced_accuracy"})},
         {"downstream_synthetic", at(down, {"variants", "synthetic", "balanced_accuracy"})},
         {"augmented_minus_real", at(down, {"difference", "augmented_minus_real", "balanced_accuracy"})},
         {"train_seconds", at(read_json_or_null(dir / "records" / "train.json"), {"seconds"})},
         {"train_steps", at(read_json_or_null(dir / work_file::kTrainModelMeta), {"steps_trained"})},
         {"sample_seconds", at(read_json_or_null(dir / "records" / "sample.json"), {"seconds"})},
         {"metrics", metrics.is_null() ? json(nullptr)
                                       : json(fs::relative(dir / work_file::kEvaluateMetrics, compare_dir).string())}});
  }
  return {{"methods", rows},
          {"downstream_measure", "balanced accuracy on the real test split, mean and std over evaluate.seeds"},
          {"feature_space",
           "Fréchet distance, precision and recall in the shared classifier's feature space (not Inception)"}};
}

std::string compare_table_markdown(const json& table) {
  std::string s =
      "| method | conditional accuracy | … by independent judges | Fréchet distance (floor) | classifier score | "
      "precision | recall | "
      "downstream: real | real + synthetic | synthetic only (CAS) | Δ real + synthetic | training | steps | sampling "
      "|\n"
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const auto& r : table.at("methods")) {
    s += fmt::format("| {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                     r.at("method").get<std::string>(), pct(r["conditional_accuracy"]),
                     pct(r["conditional_accuracy_independent"]), num(r["frechet_distance"]),
                     num(r["frechet_distance_floor"]), num(r["classifier_score"]), pct(r["precision"]),
                     pct(r["recall"]), pct_ms(r["downstream_real"]), pct_ms(r["downstream_augmented"]),
                     pct_ms(r["downstream_synthetic"]), pct_ms(r["augmented_minus_real"], true),
                     minutes(r["train_seconds"]), num(r["train_steps"], 0), minutes(r["sample_seconds"]));
  }
  s += "\nConditional accuracy: share of synthetic images given their intended class by the shared frozen classifier "
       "(an `ac` "
       "model is trained against it) and, in the next column, by the real-only downstream classifiers, which no model "
       "saw. "
       "Downstream figures: balanced accuracy on the real test split (mean ± std over seeds); Δ is paired by seed, in "
       "points. "
       "Fréchet distance, precision and recall use the shared classifier's features, not Inception; the floor is real "
       "train vs. test over the classes the synthetic set has.\n";
  return s;
}

void run_compare(const Config& config, Context& ctx, Runner& runner) {
  const auto o = ctx.options<CompareOptions>();
  const auto& g = ctx.global();
  if (!g.only.empty() || !g.from.empty()) {
    throw UserError(
        ExitCode::kUsage,
        "compare runs its own stages: --only and --from do not apply (use --force to rerun each method's evaluation)");
  }
  for (const char* stage : {"train", "sample", "evaluate"}) {
    if (!runner.find(stage))
      throw UserError(ExitCode::kSoftware, fmt::format("compare needs the '{}' stage, which this build lacks", stage));
  }
  ctx.report().info(fmt::format("== compare: {} on the same data and classifier", fmt::join(o.methods, ", ")));
  {
    // --force means the methods' evaluations: retraining the shared classifier would make every
    // method stale.
    Config shared = config;
    shared.set("force", "false", "compare");
    Context shared_ctx(shared, ctx.report());
    runner.run(shared_ctx, kSharedStages.back());
  }

  const auto compare_dir = ctx.dir("compare");
  std::vector<std::pair<std::string, cv::Mat>> rows;
  for (const auto& method : o.methods) {
    const auto dir = compare_dir / method;
    ensure_directory(dir);
    share_stage_outputs(ctx.work(), dir, kSharedStages);
    Config method_config = config;
    method_config.set("work", dir.string(), "compare");
    method_config.set("train.conditioning", method, "compare");
    Context method_ctx(method_config, ctx.report());
    ctx.report().info(fmt::format("== compare: method {} in {}", method, dir.string()));
    write_text_atomically(dir / "config.ini", method_config.to_ini());
    runner.run(method_ctx, "evaluate");

    // The picture row: the first images of each class.
    std::vector<std::pair<std::string, cv::Mat>> panels;
    const auto tiles = first_samples(dir / "sample", static_cast<int>(o.images_per_class));
    const auto plan = read_sample_plan(dir / work_file::kSamplePlan);
    for (std::size_t c = 0; c < tiles.size(); ++c) {
      if (!tiles[c].empty())
        panels.emplace_back(plan.classes[c].name, tile_grid(tiles[c], static_cast<int>(o.images_per_class), 48));
    }
    if (!panels.empty()) rows.emplace_back(method, side_by_side(panels));
  }

  const auto table = compare_table_json(compare_dir, o.methods);
  write_text_atomically(compare_dir / "table.json", table.dump(2) + "\n");
  const auto markdown = compare_table_markdown(table);
  write_text_atomically(compare_dir / "table.md", markdown);
  if (!rows.empty()) {
    std::vector<cv::Mat> titled;
    for (const auto& [method, row] : rows) titled.push_back(with_title(row, "train.conditioning = " + method));
    write_png(compare_dir / "samples.png", stacked(titled));
  }
  ctx.report().print(markdown);
  ctx.report().info(
      fmt::format("compare: {} and {}", (compare_dir / "table.md").string(), (compare_dir / "samples.png").string()));
}

}  // namespace augment
