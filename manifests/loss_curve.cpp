#include "manifests/loss_curve.h"

#include <fstream>
#include <string>

#include <fmt/format.h>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

void append_loss_row(const std::filesystem::path& csv, std::int64_t step, double loss, double lr,
                     double images_per_second) {
  std::ofstream out(csv, std::ios::app);
  out << fmt::format("{},{:.6g},{:.6g},{:.2f}\n", step, loss, lr, images_per_second);
  if (!out) throw UserError(ExitCode::kIoError, fmt::format("cannot write {}", csv.string()));
}

void truncate_loss_curve(const std::filesystem::path& csv, std::int64_t up_to_step) {
  std::string kept = "step,loss,lr,images_per_second\n";
  std::ifstream in(csv);
  std::string line;
  bool header = true;
  while (std::getline(in, line)) {
    if (header) {
      header = false;
      continue;
    }
    try {
      if (!line.empty() && std::stoll(line.substr(0, line.find(','))) <= up_to_step) kept += line + "\n";
    } catch (const std::exception&) {
      // a row cut short by a kill: dropped
    }
  }
  write_text_atomically(csv, kept);
}

LossCurve read_loss_curve(const std::filesystem::path& csv) {
  LossCurve curve;
  std::ifstream in(csv);
  std::string line;
  bool header = true;
  while (std::getline(in, line)) {
    if (header) {
      header = false;
      continue;
    }
    const auto comma = line.find(',');
    if (comma == std::string::npos) continue;
    try {
      const double s = std::stod(line.substr(0, comma));
      const double l = std::stod(line.substr(comma + 1, line.find(',', comma + 1) - comma - 1));
      curve.steps.push_back(s);
      curve.losses.push_back(l);
    } catch (const std::exception&) {
      // a row cut short by a kill
    }
  }
  return curve;
}

}  // namespace augment
