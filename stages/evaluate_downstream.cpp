#include "stages/evaluate_downstream.h"

#include <algorithm>

#include <fmt/format.h>

#include "manifests/keyed_journal.h"
#include "models/classifier_training.h"
#include "models/downstream_utility.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/base/signals.h"
#include "pipeline/context.h"
#include "pipeline/work_paths.h"
#include "stages/cache_stage.h"
#include "stages/classifier_stage.h"
#include "stages/sample_plan.h"

namespace augment {

using nlohmann::json;

SyntheticImages read_synthetic(const Context& ctx, const CacheInfo& info) {
  const auto dir = ctx.dir("sample");
  const auto plan = read_sample_plan(ctx.path(work_file::kSamplePlan));
  bool same = plan.classes.size() == info.class_names.size();
  for (std::size_t c = 0; same && c < plan.classes.size(); ++c) same = plan.classes[c].name == info.class_names[c];
  if (!same) {
    throw UserError(ExitCode::kDataError,
                    fmt::format("{} was made for other classes than the cache; rerun `augment sample --force`",
                                ctx.path(work_file::kSamplePlan).string()));
  }
  SyntheticImages out;
  out.merged = merge_journals(dir, plan);
  const auto& s = out.merged.settings;
  const auto m = static_cast<std::int64_t>(out.merged.accepted.size());
  if (m > 0 && (s.resolution != info.resolution || s.channels != info.channels)) {
    throw UserError(ExitCode::kDataError,
                    fmt::format("the samples in {} are {}px x {} channels but the cache is {}px x {}; rerun "
                                "`augment sample --force`",
                                dir.string(), s.resolution, s.channels, info.resolution, info.channels));
  }
  auto nhwc = torch::empty({m, info.resolution, info.resolution, info.channels}, torch::kUInt8);
  out.labels = torch::empty({m}, torch::kInt64);
  const auto bytes = static_cast<std::int64_t>(info.resolution) * info.resolution * info.channels;
  std::vector<std::uint8_t> png;
  for (std::int64_t i = 0; i < m; ++i) {
    const auto& e = out.merged.accepted[static_cast<std::size_t>(i)];
    const auto path = dir / e.file;
    if (!read_file_bytes(path, png)) {
      throw UserError(ExitCode::kNoInput,
                      fmt::format("{} is missing, though its journal line says it was written; rerun `augment sample`",
                                  path.string()));
    }
    const auto why = decode_png(png, info.resolution, info.channels, nhwc.data_ptr<std::uint8_t>() + i * bytes);
    if (!why.empty()) {
      throw UserError(ExitCode::kDataError,
                      fmt::format("{}: {}; delete it and rerun `augment sample`", path.string(), why));
    }
    out.labels[i] = e.label;
    if (i % 1024 == 0) check_stop();
  }
  out.images = nhwc.permute({0, 3, 1, 2}).contiguous();
  return out;
}

json evaluate_downstream(Context& ctx, const EvaluateOptions& o, const TensorSplit& train, const TensorSplit& val,
                         const TensorSplit& test, const SyntheticImages& synthetic, const torch::Device& device,
                         torch::ScalarType precision) {
  auto co = ctx.options<ClassifierOptions>();
  if (o.downstream_epochs > 0) co.epochs = o.downstream_epochs;
  DownstreamData data{{train.images, train.labels},
                      {synthetic.images, synthetic.labels},
                      {val.images, val.labels},
                      {test.images, test.labels}};
  ClassifierTrainSetup setup;
  setup.options = co;
  setup.device = device;
  setup.precision = precision;
  setup.class_names = train.info.class_names;
  setup.reporter = &ctx.report();
  setup.between_steps = [] { check_stop(); };
  setup.after_epoch = [](const EpochRecord&) { check_stop(); };

  // Finished runs are kept so a stopped evaluation does not train them again; the key holds
  // everything a run depends on.
  const auto runs_path = ctx.path(work_file::kEvaluateDownstreamRuns);
  std::string journal_key = json(ctx.config().snapshot({"classifier", "seed", "evaluate.downstream_epochs"})).dump();
  for (const char* split : kSplits) journal_key += "|" + hash_file(ctx.path(work_file::cache_split(split)));
  for (const auto& e : synthetic.merged.accepted) journal_key += "|" + e.png_hash;
  journal_key = hash_text(journal_key);
  std::vector<DownstreamRun> done;
  KeyedJournal journal(runs_path, journal_key, [&](const json& run) { done.push_back(downstream_run_from_json(run)); });

  const auto variants = downstream_variants(data, co.balance);
  std::vector<std::uint64_t> seeds;
  for (std::int64_t i = 0; i < o.seeds; ++i)
    seeds.push_back(static_cast<std::uint64_t>(ctx.global().seed) + static_cast<std::uint64_t>(i));
  std::vector<DownstreamRun> runs;
  const auto total = variants.size() * seeds.size();
  for (const auto seed : seeds) {
    for (const auto& v : variants) {
      // A real-only run journaled without its verdict on the synthetic images is trained again.
      const auto it = std::find_if(done.begin(), done.end(), [&](const DownstreamRun& r) {
        return r.variant == v && r.seed == seed && (v != "real" || data.synthetic.size() == 0 || r.synthetic);
      });
      if (it != done.end()) {
        runs.push_back(*it);
      } else {
        runs.push_back(with_hint([&] { return train_downstream_run(data, setup, v, seed); }, ExitCode::kFailure,
                                 kClassifierDivergedHint));
        const auto& r = runs.back();
        ctx.report().info(
            fmt::format("downstream run {}/{}: {} (seed {}), {} images, best epoch {}, test accuracy {:.2f}%, balanced "
                        "{:.2f}%, {:.0f} s",
                        runs.size(), total, v, seed, r.train_images, r.best_epoch, 100 * r.test.accuracy(),
                        100 * r.test.balanced_accuracy(), r.seconds));
        journal.append(downstream_run_to_json(r));
      }
    }
  }
  const auto counts = torch::bincount(train.labels.to(torch::kInt64).flatten(), {},
                                      static_cast<std::int64_t>(train.info.class_names.size()));
  std::vector<std::int64_t> train_counts(counts.data_ptr<std::int64_t>(),
                                         counts.data_ptr<std::int64_t>() + counts.numel());
  auto j = downstream_to_json(runs, train.info.class_names, train_counts);
  j["epochs"] = co.epochs;
  return j;
}

}  // namespace augment
