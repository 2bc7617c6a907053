// work/train/loss.csv: one row per logged training step (step, loss, lr, images_per_second),
// written by the trainer as it goes and read by evaluate for the loss figure. A row cut short by a
// kill is ignored by both.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace augment {

struct LossCurve {
  std::vector<double> steps;
  std::vector<double> losses;
};

// Appends one row (the header is written by truncate_loss_curve).
void append_loss_row(const std::filesystem::path& csv, std::int64_t step, double loss, double lr,
                     double images_per_second);
// Keeps the header and the rows up to `up_to_step` (a resumed run trains the later steps again).
void truncate_loss_curve(const std::filesystem::path& csv, std::int64_t up_to_step);
// Steps and losses; empty when there is no such file.
LossCurve read_loss_curve(const std::filesystem::path& csv);

}  // namespace augment
