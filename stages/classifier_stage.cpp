#include "stages/classifier_stage.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/classifier.h"
#include "models/classifier_training.h"
#include "models/device.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/base/signals.h"
#include "pipeline/context.h"
#include "pipeline/work_paths.h"
#include "stages/cache_stage.h"
#include "stages/cached_split.h"
#include "stages/stage_device.h"

namespace augment {

namespace {

using nlohmann::json;

// Training with several threads on cores that other processes also use slows down by an order
// of magnitude (every layer waits for its slowest thread), so say so when the machine is busy.
void warn_if_busy(Context& ctx, int threads) {
  std::ifstream in("/proc/loadavg");
  double load = 0;
  if (threads <= 1 || !(in >> load)) return;
  const auto cores = std::max(1u, std::thread::hardware_concurrency());
  if (load > 0.75 * cores) {
    ctx.report().warn(fmt::format(
        "the machine is busy (load {:.1f} on {} cores): training with {} threads may run far slower than with "
        "--threads 1; results are reproducible for a given thread count",
        load, cores, threads));
  }
}

std::string percent(double v) { return std::isnan(v) ? std::string("-") : fmt::format("{:.2f}%", 100.0 * v); }

class ClassifierStage final : public Stage {
 public:
  std::string name() const override { return "classifier"; }
  std::string summary() const override { return "pretrain and freeze the auxiliary classifier on the real images"; }
  std::vector<std::string> option_scopes() const override { return {"classifier", "seed"}; }
  std::vector<std::string> inputs(const Context&) const override {
    return {work_file::kCacheTrain, work_file::kCacheVal, work_file::kCacheTest};
  }
  std::vector<std::string> outputs(const Context&) const override {
    return {work_file::kClassifierModel, work_file::kClassifierModelMeta, work_file::kClassifierMetrics};
  }
  std::string content_digest(const Context& ctx, const std::string& rel) const override {
    return rel == work_file::kClassifierModel ? archive_fingerprint(ctx.work() / rel) : "";
  }

  void run(Context& ctx) override {
    const auto o = ctx.options<ClassifierOptions>();
    const auto& g = ctx.global();
    TensorSplit splits[3];
    for (int s = 0; s < 3; ++s) splits[s] = load_cached_split(ctx.path(work_file::cache_split(kSplits[s])));
    const auto& info = splits[0].info;
    for (int s = 1; s < 3; ++s) {
      if (splits[s].info.class_names != info.class_names || splits[s].info.resolution != info.resolution ||
          splits[s].info.channels != info.channels) {
        throw UserError(ExitCode::kDataError,
                        fmt::format("{} and {} disagree on classes or image size; rerun `augment cache --force`",
                                    ctx.path(work_file::kCacheTrain).string(),
                                    (ctx.path(work_file::cache_split(kSplits[s]))).string()));
      }
    }
    if (splits[0].size() == 0) {
      throw UserError(ExitCode::kDataError, fmt::format("{} holds no images; check the input and the subsample options",
                                                        ctx.path(work_file::kCacheTrain).string()));
    }
    use_stage_threads(g.threads);
    warn_if_busy(ctx, torch::get_num_threads());
    const auto device = stage_device(g.device);
    const auto precision = stage_precision(g.precision, device);

    const auto dir = ctx.dir("classifier");
    ensure_directory(dir);
    ClassifierTrainSetup setup;
    setup.options = o;
    setup.seed = static_cast<std::uint64_t>(g.seed);
    setup.device = device;
    setup.precision = precision;
    setup.class_names = info.class_names;
    setup.reporter = &ctx.report();
    setup.checkpoint = dir / "checkpoint" / "state.pt";
    // Options and the exact train/val images: anything else must not resume this checkpoint.
    setup.checkpoint_key =
        hash_text(json(ctx.config().snapshot(option_scopes())).dump() + "|" +
                  hash_file(ctx.path(work_file::kCacheTrain)) + "|" + hash_file(ctx.path(work_file::kCacheVal)));
    setup.between_steps = [] { check_stop(); };
    setup.after_epoch = [](const EpochRecord&) { check_stop(); };

    const auto arch = classifier_config(o, info.channels, info.resolution, static_cast<int>(info.class_names.size()));
    ctx.report().info(fmt::format(
        "training on {} images ({} val, {} test) of {} classes at {}px, {} channels; width {}, {} blocks/stage, "
        "{} norm; {}",
        splits[0].size(), splits[1].size(), splits[2].size(), info.class_names.size(), info.resolution, info.channels,
        arch.width, arch.blocks, arch.norm, describe(device, precision)));
    auto result = with_hint(
        [&] {
          return train_classifier({splits[0].images, splits[0].labels}, {splits[1].images, splits[1].labels}, setup);
        },
        ExitCode::kFailure, kClassifierDivergedHint);

    json split_scores = json::object();
    ConfusionMatrix test_confusion;
    for (int s = 0; s < 3; ++s) {
      const auto scores = evaluate_classifier(result.net, {splits[s].images, splits[s].labels}, device);
      auto j = metrics_to_json(scores.confusion, info.class_names);
      j["loss"] = std::isnan(scores.loss) ? json(nullptr) : json(scores.loss);
      split_scores[kSplits[s]] = j;
      if (s == 2) test_confusion = scores.confusion;
    }
    json history = json::array();
    for (const auto& r : result.history) {
      history.push_back(
          {{"epoch", r.epoch},
           {"lr", r.lr},
           {"train_loss", r.train_loss},
           {"train_accuracy", r.train_accuracy},
           {"val_loss", std::isnan(r.val_loss) ? json(nullptr) : json(r.val_loss)},
           {"val_accuracy", std::isnan(r.val_accuracy) ? json(nullptr) : json(r.val_accuracy)},
           {"val_balanced_accuracy",
            std::isnan(r.val_balanced_accuracy) ? json(nullptr) : json(r.val_balanced_accuracy)},
           {"images_per_second", r.train_seconds > 0 ? static_cast<double>(r.train_images) / r.train_seconds : 0.0}});
    }
    const json metrics = {{"classes", info.class_names},
                          {"resolution", info.resolution},
                          {"channels", info.channels},
                          {"architecture",
                           {{"width", arch.width},
                            {"blocks", arch.blocks},
                            {"norm", arch.norm},
                            {"feature_dim", result.net->feature_dim()},
                            {"parameters", parameter_count(result.net)}}},
                          {"device", describe(device, precision)},
                          {"best_epoch", result.best_epoch},
                          {"epochs_run", result.epochs_run},
                          {"stopped_early", result.stopped_early},
                          {"selected_on", "val balanced_accuracy"},
                          {"train_images_per_second", result.images_per_second()},
                          {"splits", split_scores},
                          {"history", history}};

    save_classifier(result.net, ClassifierMeta{arch, info.class_names}, ctx.path(work_file::kClassifierModel));
    write_text_atomically(ctx.path(work_file::kClassifierMetrics), metrics.dump(2) + "\n");
    // Finished: a forced rerun must train again rather than reuse the final checkpoint.
    std::error_code ec;
    fs::remove_all(dir / "checkpoint", ec);

    ctx.report().print(summary_table(split_scores, test_confusion, info.class_names, result));
  }

 private:
  static std::int64_t parameter_count(ClassifierNet& net) {
    std::int64_t n = 0;
    for (const auto& p : net->parameters()) n += p.numel();
    return n;
  }

  static std::string summary_table(const json& scores, const ConfusionMatrix& test,
                                   const std::vector<std::string>& names, const ClassifierTrainResult& result) {
    auto figure = [](const json& v) { return v.is_null() ? std::string("-") : percent(v.get<double>()); };
    std::string s = fmt::format("best epoch {} of {}{}, training {:.1f} img/s\n", result.best_epoch, result.epochs_run,
                                result.stopped_early ? " (stopped early)" : "", result.images_per_second());
    s += fmt::format("{:<8} {:>7} {:>9} {:>9}\n", "split", "images", "accuracy", "balanced");
    for (const char* split : kSplits) {
      const auto& j = scores.at(split);
      s += fmt::format("{:<8} {:>7} {:>9} {:>9}\n", split, j.at("images").get<std::int64_t>(), figure(j.at("accuracy")),
                       figure(j.at("balanced_accuracy")));
    }
    if (test.total() > 0) {
      s += fmt::format("\n{:<28} {:>7} {:>9}\n", "class", "test", "recall");
      const auto recall = test.recall();
      for (std::size_t k = 0; k < names.size(); ++k) {
        std::int64_t row = 0;
        for (auto c : test.counts()[k]) row += c;
        s += fmt::format("{:<28} {:>7} {:>9}\n", names[k], row, percent(recall[k]));
      }
    }
    return s;
  }
};

}  // namespace

std::unique_ptr<Stage> make_classifier_stage() { return std::make_unique<ClassifierStage>(); }

}  // namespace augment
