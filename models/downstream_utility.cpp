#include "models/downstream_utility.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pipeline/base/errors.h"

namespace augment {

using nlohmann::json;

namespace {

json mean_std_json(const std::vector<double>& values, bool with_runs) {
  std::vector<double> finite;
  for (double v : values) {
    if (!std::isnan(v)) finite.push_back(v);
  }
  if (finite.empty()) return nullptr;
  const auto ms = mean_std(finite);
  // One run has no spread to report; 0 would read as "no noise".
  json j = {{"mean", ms.mean}, {"std", finite.size() > 1 ? json(ms.std) : json(nullptr)}};
  if (with_runs) {
    json runs = json::array();
    for (double v : values) runs.push_back(number_or_null(v));
    j["runs"] = runs;
  }
  return j;
}

LabeledImages concatenate(const LabeledImages& a, const LabeledImages& b) {
  if (a.size() == 0) return b;
  if (b.size() == 0) return a;
  return {torch::cat({a.images, b.images.to(a.images.scalar_type())}), torch::cat({a.labels, b.labels})};
}

}  // namespace

MeanStd mean_std(const std::vector<double>& values) {
  MeanStd out;
  if (values.empty()) return {kNaN, kNaN};
  for (double v : values) out.mean += v;
  out.mean /= static_cast<double>(values.size());
  if (values.size() > 1) {
    double ss = 0;
    for (double v : values) ss += (v - out.mean) * (v - out.mean);
    out.std = std::sqrt(ss / static_cast<double>(values.size() - 1));
  }
  return out;
}

std::vector<std::string> downstream_variant_names(ClassBalance recipe_balance, bool with_synthetic) {
  std::vector<std::string> out = {"real"};
  for (const auto b : {ClassBalance::kLoss, ClassBalance::kSampler}) {
    if (b != recipe_balance) out.push_back(std::string(kBaselinePrefix) + name_of(b));
  }
  if (with_synthetic) {
    out.push_back("augmented");
    out.push_back("synthetic");
  }
  return out;
}

std::vector<std::string> downstream_variants(const DownstreamData& data, ClassBalance recipe_balance) {
  return downstream_variant_names(recipe_balance, data.synthetic.size() > 0);
}

DownstreamRun train_downstream_run(const DownstreamData& data, const ClassifierTrainSetup& setup,
                                   const std::string& variant, std::uint64_t seed) {
  LabeledImages train;
  ClassifierTrainSetup s = setup;
  if (is_real_only_variant(variant)) {
    train = data.real_train;
    if (variant != "real") s.options.balance = parse_name<ClassBalance>(variant.substr(kBaselinePrefix.size()));
  } else if (variant == "augmented") {
    train = concatenate(data.real_train, data.synthetic);
  } else if (variant == "synthetic") {
    train = data.synthetic;
  } else {
    throw std::invalid_argument("train_downstream_run: unknown variant " + variant);
  }
  if (train.size() == 0)
    throw UserError(ExitCode::kDataError,
                    fmt::format("the downstream '{}' classifier has no training images", variant));
  s.seed = seed;
  s.label = fmt::format("downstream {} seed {}", variant, seed);
  s.checkpoint.clear();
  const auto start = std::chrono::steady_clock::now();
  auto result = train_classifier(train, data.val, s);
  DownstreamRun run;
  run.variant = variant;
  run.seed = seed;
  run.train_images = train.size();
  run.best_epoch = result.best_epoch;
  run.test = evaluate_classifier(result.net, data.test, s.device).confusion;
  if (variant == "real" && data.synthetic.size() > 0)
    run.synthetic = evaluate_classifier(result.net, data.synthetic, s.device).confusion;
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

namespace {

ConfusionMatrix confusion_from_json(const json& j) {
  const auto counts = j.get<std::vector<std::vector<std::int64_t>>>();
  ConfusionMatrix m(counts.size());
  for (std::size_t t = 0; t < counts.size(); ++t) {
    if (counts[t].size() != counts.size()) throw std::invalid_argument("confusion matrix is not square");
    for (std::size_t p = 0; p < counts.size(); ++p)
      m.add(static_cast<std::int64_t>(t), static_cast<std::int64_t>(p), counts[t][p]);
  }
  return m;
}

}  // namespace

json downstream_run_to_json(const DownstreamRun& run) {
  json j = {{"variant", run.variant},       {"seed", run.seed},       {"train_images", run.train_images},
            {"best_epoch", run.best_epoch}, {"seconds", run.seconds}, {"test_confusion", run.test.counts()}};
  if (run.synthetic) j["synthetic_confusion"] = run.synthetic->counts();
  return j;
}

DownstreamRun downstream_run_from_json(const json& j) {
  DownstreamRun run;
  run.variant = j.at("variant");
  run.seed = j.at("seed");
  run.train_images = j.at("train_images");
  run.best_epoch = j.at("best_epoch");
  run.seconds = j.at("seconds");
  run.test = confusion_from_json(j.at("test_confusion"));
  if (j.contains("synthetic_confusion")) run.synthetic = confusion_from_json(j.at("synthetic_confusion"));
  return run;
}

namespace {

// Accuracy, balanced accuracy and per-class recall collected over runs (or over paired
// differences of runs), reported as mean and sample standard deviation.
struct RunFigures {
  std::vector<double> accuracy, balanced;
  std::vector<std::vector<double>> recall;

  explicit RunFigures(std::size_t classes) : recall(classes) {}
  void add(double acc, double bal, const std::vector<double>& per_class) {
    accuracy.push_back(acc);
    balanced.push_back(bal);
    for (std::size_t c = 0; c < recall.size() && c < per_class.size(); ++c) recall[c].push_back(per_class[c]);
  }
  void add(const ConfusionMatrix& m) { add(m.accuracy(), m.balanced_accuracy(), m.recall()); }
  json to_json(const std::vector<std::string>& class_names) const {
    json per_class = json::object();
    for (std::size_t c = 0; c < class_names.size(); ++c) per_class[class_names[c]] = mean_std_json(recall[c], false);
    return {{"accuracy", mean_std_json(accuracy, true)},
            {"balanced_accuracy", mean_std_json(balanced, true)},
            {"per_class_recall", per_class}};
  }
};

}  // namespace

json downstream_to_json(const std::vector<DownstreamRun>& runs, const std::vector<std::string>& class_names,
                        const std::vector<std::int64_t>& train_counts) {
  // The two classes with the fewest real training images (ties: the earlier class).
  std::vector<std::size_t> smallest;
  if (train_counts.size() == class_names.size() && class_names.size() > 2) {
    std::vector<std::size_t> idx(class_names.size());
    for (std::size_t c = 0; c < idx.size(); ++c) idx[c] = c;
    std::stable_sort(idx.begin(), idx.end(),
                     [&](std::size_t a, std::size_t b) { return train_counts[a] < train_counts[b]; });
    smallest = {idx[0], idx[1]};
  }
  auto smallest_recall = [&](const ConfusionMatrix& m) {
    const auto r = m.recall();
    double sum = 0;
    for (const auto c : smallest) sum += c < r.size() ? r[c] : 0.0;
    return sum / static_cast<double>(smallest.size());
  };
  std::vector<std::string> order;
  std::map<std::string, std::vector<const DownstreamRun*>> by_variant;
  std::vector<std::uint64_t> seeds;
  for (const auto& r : runs) {
    if (by_variant[r.variant].empty()) order.push_back(r.variant);
    by_variant[r.variant].push_back(&r);
    if (std::find(seeds.begin(), seeds.end(), r.seed) == seeds.end()) seeds.push_back(r.seed);
  }
  json variants = json::object();
  for (const auto& v : order) {
    RunFigures figures(class_names.size());
    std::vector<double> secs, small;
    std::int64_t images = 0;
    for (const auto* r : by_variant[v]) {
      figures.add(r->test);
      secs.push_back(r->seconds);
      if (!smallest.empty()) small.push_back(smallest_recall(r->test));
      images = r->train_images;
    }
    json j = figures.to_json(class_names);
    if (!smallest.empty()) j["smallest_classes_recall"] = mean_std_json(small, false);
    j["train_images"] = images;
    j["runs"] = by_variant[v].size();
    j["seconds"] = mean_std_json(secs, false);
    variants[v] = std::move(j);
  }
  // Paired by seed: the spread of the differences, not of the separate figures, says whether a
  // gain is larger than the seed-to-seed noise.
  json difference = json::object();
  json independent = nullptr;
  // Each variant against "real", and augmented against every other baseline.
  auto paired = [&](const std::string& v, const std::string& baseline) {
    std::map<std::uint64_t, const DownstreamRun*> base;
    for (const auto* r : by_variant[baseline]) base[r->seed] = r;
    RunFigures figures(class_names.size());
    for (const auto* r : by_variant[v]) {
      const auto it = base.find(r->seed);
      if (it == base.end()) continue;
      const auto rc = r->test.recall(), rb = it->second->test.recall();
      std::vector<double> gain(rc.size());
      for (std::size_t c = 0; c < rc.size() && c < rb.size(); ++c) gain[c] = rc[c] - rb[c];
      figures.add(r->test.accuracy() - it->second->test.accuracy(),
                  r->test.balanced_accuracy() - it->second->test.balanced_accuracy(), gain);
    }
    difference[v + "_minus_" + baseline] = figures.to_json(class_names);
  };
  json strongest = nullptr;
  double strongest_balanced = -1;
  for (const auto& v : order) {
    if (!is_real_only_variant(v)) continue;
    const auto& b = variants[v]["balanced_accuracy"]["mean"];
    if (b.is_number() && b.get<double>() > strongest_balanced) {
      strongest_balanced = b.get<double>();
      strongest = v;
    }
    if (v != "real" && by_variant.count("augmented")) paired("augmented", v);
  }
  if (by_variant.count("real")) {
    for (const auto& v : order) {
      if (v != "real") paired(v, "real");
    }
    RunFigures verdicts(class_names.size());
    for (const auto* r : by_variant["real"]) {
      if (r->synthetic) verdicts.add(*r->synthetic);
    }
    if (!verdicts.accuracy.empty()) {
      independent = verdicts.to_json(class_names);
      independent["judges"] = verdicts.accuracy.size();
    }
  }
  json small_names = json::array();
  for (const auto c : smallest) small_names.push_back(class_names[c]);
  return {{"seeds", seeds},
          {"variants", variants},
          {"difference", difference},
          {"smallest_classes", small_names},
          {"strongest_baseline", strongest},
          {"independent_conditional_accuracy", independent}};
}

}  // namespace augment
