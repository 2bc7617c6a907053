#include "manifests/loss_curve.h"

#include <fstream>
#include <functional>
#include <string>

#include <fmt/format.h>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

namespace {

constexpr const char* kHeader = "step,loss,lr,images_per_second\n";

// Calls `row` with each line after the header; a row it throws on (one cut short by a kill) is
// skipped.
void for_each_row(const std::filesystem::path& csv, const std::function<void(const std::string&)>& row) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    try {
      row(line);
    } catch (const std::exception&) {
      // a row cut short by a kill
    }
  }
}

}  // namespace

void append_loss_row(const std::filesystem::path& csv, std::int64_t step, double loss, double lr,
                     double images_per_second) {
  std::ofstream out(csv, std::ios::app);
  out << fmt::format("{},{:.6g},{:.6g},{:.2f}\n", step, loss, lr, images_per_second);
  if (!out) throw UserError(ExitCode::kIoError, fmt::format("cannot write {}", csv.string()));
}

void truncate_loss_curve(const std::filesystem::path& csv, std::int64_t up_to_step) {
  std::string kept = kHeader;
  for_each_row(csv, [&](const std::string& line) {
    if (!line.empty() && std::stoll(line.substr(0, line.find(','))) <= up_to_step) kept += line + "\n";
  });
  write_text_atomically(csv, kept);
}

LossCurve read_loss_curve(const std::filesystem::path& csv) {
  LossCurve curve;
  for_each_row(csv, [&](const std::string& line) {
    const auto comma = line.find(',');
    if (comma == std::string::npos) return;
    const double s = std::stod(line.substr(0, comma));
    const double l = std::stod(line.substr(comma + 1, line.find(',', comma + 1) - comma - 1));
    curve.steps.push_back(s);
    curve.losses.push_back(l);
  });
  return curve;
}

}  // namespace augment
