#include "stages/evaluate_stage.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "manifests/loss_curve.h"
#include "manifests/sample_store.h"
#include "models/classifier.h"
#include "models/classifier_training.h"
#include "models/device.h"
#include "models/downstream_utility.h"
#include "models/downstream_variants.h"
#include "models/metrics.h"
#include "models/tsne.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/base/rng.h"
#include "pipeline/base/signals.h"
#include "pipeline/context.h"
#include "pipeline/work_paths.h"
#include "stages/cache_stage.h"
#include "stages/cached_split.h"
#include "stages/classifier_stage.h"
#include "stages/evaluate_downstream.h"
#include "stages/evaluate_figures.h"
#include "stages/evaluate_quality.h"
#include "stages/evaluate_report.h"
#include "stages/sample_plan.h"
#include "stages/stage_device.h"

namespace augment {

using nlohmann::json;

void EvaluateOptions::bind(OptionBinder<EvaluateOptions>& b) {
  using I = std::int64_t;
  b.add("seeds", &EvaluateOptions::seeds,
        "downstream utility: classifiers trained per variant (real, real + synthetic, synthetic only), each with its "
        "own seed; 0: skip",
        in_range<I>(0, 100));
  b.add("downstream_epochs", &EvaluateOptions::downstream_epochs,
        "epochs of each downstream classifier; 0: classifier.epochs", at_least<I>(0));
  b.add("neighbours", &EvaluateOptions::neighbours, "k of the k-nearest-neighbour manifolds of precision and recall",
        in_range<I>(1, 100));
  b.add("tsne_points", &EvaluateOptions::tsne_points,
        "most points in the t-SNE maps, half real and half synthetic (exact t-SNE: time and memory grow with its "
        "square); 0: no maps",
        in_range<I>(0, 20000));
  b.add("perplexity", &EvaluateOptions::perplexity, "t-SNE perplexity (effective neighbours per point)",
        in_range(2.0, 500.0));
  b.add("tsne_iterations", &EvaluateOptions::tsne_iterations, "t-SNE gradient steps", in_range<I>(300, 100000));
  b.add("grid", &EvaluateOptions::grid, "the per-class sample grids show grid x grid images", in_range<I>(1, 32));
}

namespace {

// A uint8 [C, H, W] tensor as an HWC cv::Mat that owns its pixels.
cv::Mat to_mat(const torch::Tensor& chw) {
  const auto hwc = chw.permute({1, 2, 0}).contiguous();
  const int h = static_cast<int>(hwc.size(0)), w = static_cast<int>(hwc.size(1)), c = static_cast<int>(hwc.size(2));
  return cv::Mat(h, w, c == 1 ? CV_8UC1 : CV_8UC3, hwc.data_ptr<std::uint8_t>()).clone();
}

class EvaluateStage final : public Stage {
 public:
  std::string name() const override { return "evaluate"; }
  std::string summary() const override {
    return "score the synthetic images, measure downstream utility, write an HTML report";
  }
  std::vector<std::string> option_scopes() const override { return {"evaluate", "classifier", "seed"}; }
  std::vector<std::string> inputs(const Context& ctx) const override {
    std::vector<std::string> in = {work_file::kCacheTrain,          work_file::kCacheVal,
                                   work_file::kCacheTest,           work_file::kClassifierModel,
                                   work_file::kClassifierModelMeta, work_file::kSamplePlan};
    for (const auto& j : find_journals(ctx.dir("sample")))
      in.push_back(work_file::sample_file(j.second.filename().string()));
    // Optional: the loss curve is drawn when the model was trained in this work dir.
    if (fs::exists(ctx.path(work_file::kTrainLoss))) in.push_back(work_file::kTrainLoss);
    return in;
  }
  std::vector<std::string> outputs(const Context&) const override {
    return {work_file::kEvaluateMetrics, work_file::report_file("index.html"), work_file::report_file("metrics.json")};
  }

  void run(Context& ctx) override {
    const auto start = std::chrono::steady_clock::now();
    const auto o = ctx.options<EvaluateOptions>();
    const auto& g = ctx.global();
    use_stage_threads(g.threads);
    const auto device = stage_device(g.device);
    const auto precision = stage_precision(g.precision, device);

    TensorSplit splits[3];
    for (int s = 0; s < 3; ++s) splits[s] = load_cached_split(ctx.path(work_file::cache_split(kSplits[s])));
    const auto& info = splits[0].info;
    const auto& names = info.class_names;
    const int k_classes = static_cast<int>(names.size());
    auto& train = splits[0];
    auto& val = splits[1];
    // The held-out real images the synthetic ones are compared with: test, else val, else (a run
    // without held-out images still gets its scores, without the real references) train.
    const bool has_test = splits[2].size() > 0;
    const bool held_out = has_test || val.size() > 0;
    auto& test = has_test ? splits[2] : held_out ? splits[1] : splits[0];
    const std::string reference = has_test ? "test" : held_out ? "val" : "train";
    if (!has_test) {
      ctx.report().warn(
          fmt::format("{} holds no images: the synthetic images are compared with the real {} split{}; set "
                      "subsample.test_fraction above 0 for the full evaluation",
                      ctx.path(work_file::kCacheTest).string(), reference,
                      held_out ? " and the downstream utility is left out"
                               : ", the real references and the downstream utility are left out"));
    }
    auto synthetic = read_synthetic(ctx, info);
    const auto m = synthetic.images.size(0);
    ctx.report().info(
        fmt::format("evaluating {} synthetic images against {} real train and {} real {} images of {} classes", m,
                    train.size(), test.size(), reference, k_classes));

    auto net = with_hints(
        [&] {
          return load_frozen_classifier(ctx.path(work_file::kClassifierModel), names, info.resolution, info.channels,
                                        device);
        },
        kRunClassifierFirst, kRerunClassifier);
    const auto out_train = classifier_outputs(net, train.images, device);
    const auto out_test = classifier_outputs(net, test.images, device);
    const auto out_syn = classifier_outputs(net, synthetic.images, device);
    check_stop();

    json metrics;
    metrics["classes"] = names;
    metrics["feature_space"] = {
        {"model", work_file::kClassifierModel},
        {"layer", "penultimate (globally pooled, before the linear head)"},
        {"dims", net->feature_dim()},
        {"note", "Fréchet distance, precision/recall and t-SNE use this run's classifier features, not Inception"}};
    // "test" in the keys below is this split.
    metrics["reference_split"] = reference;
    metrics["images"] = {
        {"real_train", train.size()}, {"real_val", val.size()}, {"real_test", splits[2].size()}, {"synthetic", m}};
    auto per_class_counts = [&](const torch::Tensor& labels) {
      const auto counts = torch::bincount(labels, {}, k_classes);
      return std::vector<std::int64_t>(counts.data_ptr<std::int64_t>(), counts.data_ptr<std::int64_t>() + k_classes);
    };
    metrics["per_class_images"] = {{"real_train", per_class_counts(train.labels)},
                                   {"reference", per_class_counts(test.labels)},
                                   {"synthetic", per_class_counts(synthetic.labels)}};
    const auto& st = synthetic.merged.settings;
    metrics["generation"] = sampling_settings_json(st, {"sampler", "steps", "guidance", "conditioning", "checkpoint"});
    metrics["generation"]["seed"] = synthetic.merged.run_seed;

    ctx.report().info("conditional accuracy, Fréchet distance, classifier score, precision/recall");
    add_quality_metrics(metrics, o, names, train, test, synthetic, out_train, out_test, out_syn, held_out, reference);
    check_stop();

    metrics["downstream"] = o.seeds > 0 && has_test
                                ? evaluate_downstream(ctx, o, train, val, test, synthetic, device, precision)
                                : json(nullptr);

    // Pictures and the page, built in a temp folder and swapped in whole.
    write_report(ctx, o, metrics, train, out_train.features, synthetic, out_syn.features, start);
    ctx.report().print(summary_text(metrics));
    ctx.report().info(fmt::format("report: {}", ctx.path(work_file::report_file("index.html")).string()));
  }

 private:
  // evaluate/report/ (figures, metrics.json, index.html) swapped in whole, then evaluate/metrics.json.
  static void write_report(Context& ctx, const EvaluateOptions& o, json& metrics, const TensorSplit& train,
                           const torch::Tensor& train_features, const SyntheticImages& synthetic,
                           const torch::Tensor& syn_features, std::chrono::steady_clock::time_point start) {
    const auto report_dir = ctx.path(work_file::kEvaluateReport);
    ensure_directory(report_dir.parent_path());
    TempTree tmp(temp_path_for(report_dir));
    ensure_directory(tmp.path());
    const auto sections = draw_figures(ctx, o, tmp.path(), metrics, train, train_features, synthetic, syn_features);
    metrics["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    json figures = json::array();
    for (const auto& s : sections) {
      for (const auto& f : s.figures) figures.push_back(f.file);
    }
    metrics["figures"] = figures;
    const auto text = metrics.dump(2) + "\n";
    write_text_atomically(tmp.path() / "metrics.json", text);
    write_text_atomically(tmp.path() / "index.html", evaluation_html(metrics, sections));
    replace_directory(tmp.path(), report_dir);
    tmp.release();
    write_text_atomically(ctx.path(work_file::kEvaluateMetrics), text);
  }

  static std::vector<ReportSection> draw_figures(Context& ctx, const EvaluateOptions& o, const fs::path& dir,
                                                 json& metrics, const TensorSplit& train,
                                                 const torch::Tensor& train_features, const SyntheticImages& synthetic,
                                                 const torch::Tensor& syn_features) {
    const auto& names = train.info.class_names;
    const int res = train.info.resolution;
    const auto seed = static_cast<std::uint64_t>(ctx.global().seed);
    std::vector<ReportSection> sections;

    // Training loss.
    ReportSection loss{"Training", "", {}};
    const auto [steps, losses] = read_loss_curve(ctx.path(work_file::kTrainLoss));
    if (!steps.empty()) {
      write_png(dir / "loss.png", line_chart(steps, losses, "diffusion training loss", "optimizer step", "loss",
                                             std::max<int>(1, static_cast<int>(steps.size() / 40))));
      loss.figures.push_back({"loss.png", "Training loss",
                              "Mean denoising loss per logged interval (train/loss.csv); bold: moving average"});
    }
    sections.push_back(loss);

    // t-SNE of real train and synthetic features.
    ReportSection maps{
        "t-SNE maps",
        "Real train and synthetic images embedded together from the classifier's features. Synthetic images that fall "
        "among the real images of their class look like them to the classifier; separate synthetic islands do not.",
        {}};
    metrics["tsne"] = nullptr;
    const auto n_real = train.size(), n_syn = synthetic.images.size(0);
    if (o.tsne_points >= 4 && n_real + n_syn >= 4) {
      std::int64_t take_syn = std::min(n_syn, o.tsne_points / 2);
      std::int64_t take_real = std::min(n_real, o.tsne_points - take_syn);
      take_syn = std::min(n_syn, o.tsne_points - take_real);
      auto pick = [&](std::int64_t n, std::int64_t take, const char* purpose) {
        std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
        for (std::int64_t i = 0; i < n; ++i) idx[static_cast<std::size_t>(i)] = i;
        Rng rng(seed, purpose);
        rng.shuffle(idx);
        idx.resize(static_cast<std::size_t>(take));
        return idx;
      };
      const auto ri = pick(n_real, take_real, "evaluate/tsne/real"),
                 si = pick(n_syn, take_syn, "evaluate/tsne/synthetic");
      const auto ri_t = torch::tensor(ri, torch::kInt64), si_t = torch::tensor(si, torch::kInt64);
      auto features = torch::cat({train_features.index_select(0, ri_t), syn_features.index_select(0, si_t)});
      auto labels = torch::cat({train.labels.index_select(0, ri_t), synthetic.labels.index_select(0, si_t)});
      auto images = torch::cat({train.images.index_select(0, ri_t), synthetic.images.index_select(0, si_t)});
      // Draw order mixed, so neither set always lies on top.
      auto order = pick(take_real + take_syn, take_real + take_syn, "evaluate/tsne/order");
      TsneOptions to;
      to.perplexity = o.perplexity;
      to.iterations = o.tsne_iterations;
      to.seed = seed;
      ctx.report().info(fmt::format("t-SNE of {} real and {} synthetic images", take_real, take_syn));
      const auto t0 = std::chrono::steady_clock::now();
      const auto y = tsne(features, to).contiguous();
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      check_stop();
      std::vector<MapPoint> points;
      std::vector<cv::Mat> tiles;
      const auto* yp = y.data_ptr<float>();
      const auto* lp = labels.data_ptr<std::int64_t>();
      for (const auto i : order) {
        points.push_back({yp[2 * i], yp[2 * i + 1], static_cast<int>(lp[i]), i >= take_real});
        tiles.push_back(to_mat(images[i]));
      }
      write_png(dir / "tsne_classes.png", scatter_map(points, names, 900));
      write_png(dir / "tsne_thumbnails.png", thumbnail_map(points, tiles, names, 1600, std::clamp(res, 24, 40)));
      maps.figures.push_back(
          {"tsne_classes.png", "t-SNE map coloured by class", "dots: real train images; crosses: synthetic images"});
      maps.figures.push_back({"tsne_thumbnails.png", "t-SNE map of the images themselves",
                              "each point drawn as its image, framed in its class colour (solid frame: real, corners "
                              "only: synthetic; legend on the right); overlapping images are "
                              "left out"});
      metrics["tsne"] = {{"real", take_real},
                         {"synthetic", take_syn},
                         {"perplexity", to.perplexity},
                         {"iterations", to.iterations},
                         {"seed", seed},
                         {"seconds", secs},
                         {"nearest_neighbour_class_agreement", finite_or_null(nearest_neighbour_agreement(y, labels))}};
    }
    sections.push_back(maps);

    // Per class: the synthetic images, and real next to synthetic.
    ReportSection grids{"Synthetic images per class", "The first images generated for each class (by index).", {}};
    ReportSection pairs{
        "Real and synthetic images per class", "Left: randomly chosen real train images; right: synthetic images.", {}};
    const int grid = static_cast<int>(o.grid);
    const int cell = std::max(res, 48);
    for (int c = 0; c < static_cast<int>(names.size()); ++c) {
      const auto syn_idx = (synthetic.labels == c).nonzero().flatten();
      const auto real_idx = (train.labels == c).nonzero().flatten();
      std::vector<cv::Mat> syn_tiles, real_tiles;
      for (std::int64_t i = 0; i < std::min<std::int64_t>(syn_idx.size(0), grid * grid); ++i) {
        syn_tiles.push_back(to_mat(synthetic.images[syn_idx[i].item<std::int64_t>()]));
      }
      if (syn_tiles.empty()) continue;
      const auto file = fmt::format("samples_{:03}.png", c);
      write_png(dir / file, with_title(tile_grid(syn_tiles, grid, cell), names[c]));
      grids.figures.push_back(
          {file, names[c], fmt::format("{} of {} synthetic images", syn_tiles.size(), syn_idx.size(0))});

      const int rows = std::max(1, grid / 2);
      std::vector<std::int64_t> order(static_cast<std::size_t>(real_idx.size(0)));
      for (std::size_t i = 0; i < order.size(); ++i)
        order[i] = real_idx[static_cast<std::int64_t>(i)].item<std::int64_t>();
      Rng rng(seed, fmt::format("evaluate/grid/{}", names[c]));
      rng.shuffle(order);
      for (std::size_t i = 0; i < std::min<std::size_t>(order.size(), static_cast<std::size_t>(rows * grid)); ++i) {
        real_tiles.push_back(to_mat(train.images[order[i]]));
      }
      syn_tiles.resize(std::min<std::size_t>(syn_tiles.size(), static_cast<std::size_t>(rows * grid)));
      std::vector<std::pair<std::string, cv::Mat>> panels;
      if (!real_tiles.empty()) panels.emplace_back("real", tile_grid(real_tiles, grid, cell));
      panels.emplace_back("synthetic", tile_grid(syn_tiles, grid, cell));
      const auto pair_file = fmt::format("real_vs_synthetic_{:03}.png", c);
      write_png(dir / pair_file, with_title(side_by_side(panels), names[c]));
      pairs.figures.push_back({pair_file, names[c] + ": real and synthetic", ""});
      check_stop();
    }
    sections.push_back(grids);
    sections.push_back(pairs);
    return sections;
  }

  static std::string summary_text(const json& m) {
    auto pct = [](const json& v) {
      return v.is_number() ? fmt::format("{:.2f}%", 100 * v.get<double>()) : std::string("-");
    };
    auto num = [](const json& v) { return v.is_number() ? fmt::format("{:.3f}", v.get<double>()) : std::string("-"); };
    // Absent parts (null) read as "-".
    auto at = [](const json& j, std::initializer_list<const char*> path) {
      const json* p = &j;
      for (const char* key : path) {
        if (!p->is_object() || !p->contains(key)) return json(nullptr);
        p = &(*p)[key];
      }
      return *p;
    };
    std::string s = fmt::format("{:<34} {:>12} {:>14}\n", "metric", "synthetic", "real reference");
    s += fmt::format("{:<34} {:>12} {:>14}\n", "conditional accuracy", pct(at(m, {"conditional_accuracy", "accuracy"})),
                     pct(at(m, {"classifier_on_real_test", "accuracy"})));
    if (at(m, {"downstream", "independent_conditional_accuracy"}).is_object()) {
      s += fmt::format("{:<34} {:>12} {:>14}\n", "  by independent judges",
                       pct(at(m, {"downstream", "independent_conditional_accuracy", "accuracy", "mean"})),
                       pct(at(m, {"downstream", "variants", "real", "accuracy", "mean"})));
    }
    s += fmt::format("{:<34} {:>12} {:>14}\n", "Fréchet distance (classifier space)",
                     num(at(m, {"frechet_distance", "synthetic_vs_test", "overall"})),
                     num(at(m, {"frechet_distance", "train_vs_test", "overall"})));
    s += fmt::format("{:<34} {:>12} {:>14}\n", "classifier score", num(at(m, {"classifier_score", "synthetic"})),
                     num(at(m, {"classifier_score", "real_test"})));
    s += fmt::format("{:<34} {:>12} {:>14}\n", "precision",
                     pct(at(m, {"precision_recall", "synthetic_vs_test", "precision"})),
                     pct(at(m, {"precision_recall", "train_vs_test", "precision"})));
    s +=
        fmt::format("{:<34} {:>12} {:>14}\n", "recall", pct(at(m, {"precision_recall", "synthetic_vs_test", "recall"})),
                    pct(at(m, {"precision_recall", "train_vs_test", "recall"})));
    const auto& d = m["downstream"];
    if (d.is_object()) {
      s += fmt::format("\ndownstream (real test, {} seed(s)) {:>12} {:>14}\n", d["seeds"].size(), "accuracy",
                       "balanced");
      auto ms = [](const json& x) {
        if (!x.is_object()) return std::string("-");
        const double mean = 100 * x["mean"].get<double>();
        return x["std"].is_number() ? fmt::format("{:.2f}±{:.2f}%", mean, 100 * x["std"].get<double>())
                                    : fmt::format("{:.2f}%", mean);
      };
      for (const char* name : kDownstreamVariantOrder) {
        if (!d["variants"].contains(name)) continue;
        const auto& v = d["variants"][name];
        s += fmt::format("  {:<32} {:>12} {:>14}\n", name, ms(v["accuracy"]), ms(v["balanced_accuracy"]));
      }
    }
    return s;
  }
};

}  // namespace

std::unique_ptr<Stage> make_evaluate_stage() { return std::make_unique<EvaluateStage>(); }

}  // namespace augment
