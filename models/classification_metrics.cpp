#include "models/classification_metrics.h"

#include <cmath>
#include <limits>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace augment {

ConfusionMatrix::ConfusionMatrix(std::size_t num_classes)
    : counts_(num_classes, std::vector<std::int64_t>(num_classes, 0)) {}

void ConfusionMatrix::add(std::int64_t true_class, std::int64_t predicted_class, std::int64_t n) {
  const auto k = static_cast<std::int64_t>(counts_.size());
  if (true_class < 0 || true_class >= k || predicted_class < 0 || predicted_class >= k) {
    throw std::out_of_range("confusion matrix: class index outside 0.." + std::to_string(k - 1));
  }
  counts_[static_cast<std::size_t>(true_class)][static_cast<std::size_t>(predicted_class)] += n;
}

std::int64_t ConfusionMatrix::total() const {
  std::int64_t n = 0;
  for (const auto& row : counts_) {
    for (auto c : row) n += c;
  }
  return n;
}

double ConfusionMatrix::accuracy() const {
  const auto n = total();
  if (n == 0) return kNaN;
  std::int64_t correct = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) correct += counts_[i][i];
  return static_cast<double>(correct) / static_cast<double>(n);
}

std::vector<double> ConfusionMatrix::recall() const {
  std::vector<double> out;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    std::int64_t row = 0;
    for (auto c : counts_[i]) row += c;
    out.push_back(row == 0 ? kNaN : static_cast<double>(counts_[i][i]) / static_cast<double>(row));
  }
  return out;
}

double ConfusionMatrix::balanced_accuracy() const {
  double sum = 0;
  int present = 0;
  for (double r : recall()) {
    if (!std::isnan(r)) {
      sum += r;
      ++present;
    }
  }
  return present == 0 ? kNaN : sum / present;
}

nlohmann::json metrics_to_json(const ConfusionMatrix& m, const std::vector<std::string>& class_names) {
  // JSON has no NaN: an undefined score is null.
  auto number = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); };
  nlohmann::json recall = nlohmann::json::object();
  const auto r = m.recall();
  for (std::size_t i = 0; i < r.size(); ++i)
    recall[i < class_names.size() ? class_names[i] : std::to_string(i)] = number(r[i]);
  return {{"images", m.total()},
          {"accuracy", number(m.accuracy())},
          {"balanced_accuracy", number(m.balanced_accuracy())},
          {"per_class_recall", recall},
          {"confusion_matrix", m.counts()}};
}

nlohmann::json number_or_null(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

}  // namespace augment
