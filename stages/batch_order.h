// Which training images make each batch of the denoiser's training: a pure function of the seed
// and the batch's number, so resuming (with any number of ranks) sees the same batches.
#pragma once

#include <cstdint>
#include <vector>

namespace augment {

// The order of the training images in epoch `epoch`, n = labels.size() entries. class_power 1:
// a permutation of [0, n) derived from (seed, epoch). Below 1, class c fills a quota of the epoch
// proportional to count_c^class_power, by rounds of shuffles of its images (a rare class repeats,
// a common one is thinned), and the whole is shuffled.
std::vector<std::int64_t> epoch_order(std::uint64_t seed, std::int64_t epoch, const std::vector<std::int64_t>& labels,
                                      double class_power);

// Which images make global batch `global_micro` (= step * accumulate + micro): epoch orders cut
// into batches of `batch`; the tail of an epoch that does not fill a batch is skipped. Rank r of
// `world` takes the r-th contiguous 1/world of it, so the ranks' slices are disjoint and together
// are the single-process batch. A batch is a pure function of its number, so a resumed run (with
// any world size) sees exactly the batches the uninterrupted one would have.
class BatchOrder {
 public:
  BatchOrder(std::uint64_t seed, std::vector<std::int64_t> labels, double class_power, std::int64_t batch);
  std::vector<std::int64_t> for_rank(std::int64_t global_micro, int rank, int world);

 private:
  std::uint64_t seed_;
  std::vector<std::int64_t> labels_;
  double class_power_;
  std::int64_t batch_;
  std::int64_t epoch_ = -1;  // the epoch `order_` holds
  std::vector<std::int64_t> order_;
};

}  // namespace augment
