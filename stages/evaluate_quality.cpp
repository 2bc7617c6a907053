#include "stages/evaluate_quality.h"

#include "models/classification_metrics.h"
#include "models/metrics.h"

namespace augment {

using nlohmann::json;

json finite_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

namespace {

// Rows of `x` whose label in `labels` is `label`.
torch::Tensor rows_of_class(const torch::Tensor& x, const torch::Tensor& labels, int label) {
  return x.index_select(0, (labels == label).nonzero().flatten());
}

torch::Tensor classes_present(const torch::Tensor& labels, std::size_t classes) {
  return torch::bincount(labels.to(torch::kInt64), {}, static_cast<int64_t>(classes)) > 0;
}

// Per class and overall, a score of (a, b) feature sets. "overall" counts the classes the synthetic
// set has (the largest class gets none under balance=max), so that the real train vs. test floor
// and the synthetic score compare the same classes with the same reference images.
json frechet_table(const torch::Tensor& a, const torch::Tensor& la, const torch::Tensor& b, const torch::Tensor& lb,
                   const std::vector<std::string>& names, const torch::Tensor& synthetic_labels) {
  json per_class = json::object();
  for (std::size_t c = 0; c < names.size(); ++c) {
    const int k = static_cast<int>(c);
    per_class[names[c]] = finite_or_null(frechet_distance(rows_of_class(a, la, k), rows_of_class(b, lb, k)));
  }
  return {
      {"overall",
       finite_or_null(frechet_distance_at_mix(a, la, b, lb, classes_present(synthetic_labels, names.size())))},
      {"overall_all_classes", finite_or_null(frechet_distance_at_mix(a, la, b, lb, classes_present(la, names.size())))},
      {"overall_as_sampled", finite_or_null(frechet_distance(a, b))},
      {"per_class", per_class}};
}

json precision_recall_table(const torch::Tensor& query, const torch::Tensor& lq, const torch::Tensor& real,
                            const torch::Tensor& lr, const std::vector<std::string>& names, int k) {
  auto score = [k](const torch::Tensor& q, const torch::Tensor& r) -> json {
    if (q.size(0) <= k || r.size(0) <= k) return nullptr;
    const auto pr = knn_precision_recall(r, q, k);
    return {{"precision", pr.precision}, {"recall", pr.recall}};
  };
  json per_class = json::object();
  for (std::size_t c = 0; c < names.size(); ++c) {
    const int label = static_cast<int>(c);
    per_class[names[c]] = score(rows_of_class(query, lq, label), rows_of_class(real, lr, label));
  }
  json out = score(query, real);
  if (out.is_null()) out = {{"precision", nullptr}, {"recall", nullptr}};
  out["per_class"] = per_class;
  return out;
}

}  // namespace

// The scores of the synthetic images against the held-out real ones (`test`), and of real train
// against them as the floor, in the classifier's feature space.
void add_quality_metrics(json& metrics, const EvaluateOptions& o, const std::vector<std::string>& names,
                         const TensorSplit& train, const TensorSplit& test, const SyntheticImages& synthetic,
                         const ClassifierOutputs& out_train, const ClassifierOutputs& out_test,
                         const ClassifierOutputs& out_syn, bool held_out, const std::string& reference) {
  const int k_classes = static_cast<int>(names.size());
  metrics["conditional_accuracy"] =
      metrics_to_json(conditional_confusion(out_syn.logits, synthetic.labels, k_classes), names);
  metrics["classifier_on_real_test"] =
      metrics_to_json(conditional_confusion(out_test.logits, test.labels, k_classes), names);
  metrics["frechet_distance"] = {
      {"synthetic_vs_test",
       frechet_table(out_syn.features, synthetic.labels, out_test.features, test.labels, names, synthetic.labels)},
      {"train_vs_test", held_out ? frechet_table(out_train.features, train.labels, out_test.features, test.labels,
                                                 names, synthetic.labels)
                                 : json(nullptr)}};
  metrics["classifier_score"] = {{"synthetic", finite_or_null(classifier_score(out_syn.logits))},
                                 {"real_train", finite_or_null(classifier_score(out_train.logits))},
                                 {"real_test", finite_or_null(classifier_score(out_test.logits))},
                                 {"maximum", k_classes}};
  const int k = static_cast<int>(o.neighbours);
  metrics["precision_recall"] = {
      {"k", k},
      {"reference", "real " + reference},
      {"synthetic_vs_test",
       precision_recall_table(out_syn.features, synthetic.labels, out_test.features, test.labels, names, k)},
      {"train_vs_test",
       held_out ? precision_recall_table(out_train.features, train.labels, out_test.features, test.labels, names, k)
                : json(nullptr)}};
}

}  // namespace augment
