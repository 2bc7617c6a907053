#include "stages/batch_order.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "pipeline/base/rng.h"

namespace augment {

std::vector<std::int64_t> epoch_order(std::uint64_t seed, std::int64_t epoch, const std::vector<std::int64_t>& labels,
                                      double class_power) {
  const std::size_t n = labels.size();
  std::vector<std::int64_t> order;
  order.reserve(n);
  Rng rng(seed, fmt::format("train-epoch-{}", epoch));
  if (class_power >= 1.0) {
    for (std::size_t i = 0; i < n; ++i) order.push_back(static_cast<std::int64_t>(i));
    rng.shuffle(order);
    return order;
  }
  const std::int64_t classes = labels.empty() ? 0 : *std::max_element(labels.begin(), labels.end()) + 1;
  std::vector<std::vector<std::int64_t>> members(static_cast<std::size_t>(classes));
  for (std::size_t i = 0; i < n; ++i)
    members[static_cast<std::size_t>(labels[i])].push_back(static_cast<std::int64_t>(i));
  // Quotas: largest remainders of n * w_c / sum(w), so they add up to n exactly.
  std::vector<double> share(members.size(), 0.0);
  double total = 0.0;
  for (std::size_t c = 0; c < members.size(); ++c) {
    if (!members[c].empty()) share[c] = std::pow(static_cast<double>(members[c].size()), class_power);
    total += share[c];
  }
  std::vector<std::size_t> quota(members.size());
  std::vector<std::pair<double, std::size_t>> remainder;
  std::size_t given = 0;
  for (std::size_t c = 0; c < members.size(); ++c) {
    const double exact = static_cast<double>(n) * share[c] / total;
    quota[c] = static_cast<std::size_t>(exact);
    given += quota[c];
    remainder.emplace_back(-(exact - static_cast<double>(quota[c])), c);
  }
  std::sort(remainder.begin(), remainder.end());
  for (std::size_t k = 0; given < n; ++k, ++given) ++quota[remainder[k % remainder.size()].second];
  for (std::size_t c = 0; c < members.size(); ++c) {
    auto& m = members[c];
    for (std::size_t taken = 0; taken < quota[c]; taken += m.size()) {
      rng.shuffle(m);
      order.insert(order.end(), m.begin(),
                   m.begin() + static_cast<std::ptrdiff_t>(std::min(m.size(), quota[c] - taken)));
    }
  }
  rng.shuffle(order);
  return order;
}

BatchOrder::BatchOrder(std::uint64_t seed, std::vector<std::int64_t> labels, double class_power, std::int64_t batch)
    : seed_(seed), labels_(std::move(labels)), class_power_(class_power), batch_(batch) {
  if (batch_ < 1 || static_cast<std::int64_t>(labels_.size()) < batch_)
    throw std::logic_error("BatchOrder: fewer images than a batch");
}

std::vector<std::int64_t> BatchOrder::for_rank(std::int64_t global_micro, int rank, int world) {
  const std::int64_t per_epoch = static_cast<std::int64_t>(labels_.size()) / batch_;
  const std::int64_t epoch = global_micro / per_epoch, index = global_micro % per_epoch;
  if (epoch != epoch_) {
    order_ = epoch_order(seed_, epoch, labels_, class_power_);
    epoch_ = epoch;
  }
  const std::int64_t local = batch_ / world;
  const auto begin = order_.begin() + index * batch_ + rank * local;
  return {begin, begin + local};
}

}  // namespace augment
