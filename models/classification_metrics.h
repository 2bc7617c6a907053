// Scores of a classifier from its confusion matrix. Kept free of LibTorch so that evaluation
// code and reports can use it without the heavy headers.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace augment {

// A figure that has no value (a class without images, an epoch without validation): NaN in
// memory, null in JSON.
inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Such a figure in JSON: the number, or null for NaN.
nlohmann::json number_or_null(double v);

// counts[t][p]: images of true class t predicted as class p.
class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(std::size_t num_classes = 0);

  void add(std::int64_t true_class, std::int64_t predicted_class, std::int64_t n = 1);
  std::size_t num_classes() const { return counts_.size(); }
  std::int64_t total() const;
  std::int64_t count(std::size_t true_class, std::size_t predicted_class) const {
    return counts_[true_class][predicted_class];
  }
  const std::vector<std::vector<std::int64_t>>& counts() const { return counts_; }

  double accuracy() const;
  // Recall of each class; NaN for a class without images.
  std::vector<double> recall() const;
  // Mean recall over the classes that have images: accuracy as if every class were equally
  // common, the honest figure for unbalanced data.
  double balanced_accuracy() const;

 private:
  std::vector<std::vector<std::int64_t>> counts_;
};

// {"images", "accuracy", "balanced_accuracy", "per_class_recall": {name: r}, "confusion_matrix"}
// with rows = true class, columns = predicted class; a class without images has recall null.
nlohmann::json metrics_to_json(const ConfusionMatrix& m, const std::vector<std::string>& class_names);

}  // namespace augment
