#include "pipeline/base/report.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(seconds + 0.5);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

Reporter::Reporter(bool quiet, const std::filesystem::path& log_json)
    : quiet_(quiet), interactive_(::isatty(STDERR_FILENO) == 1) {
  if (!log_json.empty()) {
    json_ = std::fopen(log_json.c_str(), "a");
    if (!json_)
      throw UserError(ExitCode::kCantCreate, fmt::format("cannot open --log-json file {}", log_json.string()));
  }
}

Reporter::~Reporter() {
  if (json_) std::fclose(json_);
}

void Reporter::write_line(std::FILE* stream, std::string_view text) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (progress_open_ && interactive_) {
    std::fputs("\r\033[K", stderr);
  }
  std::fwrite(text.data(), 1, text.size(), stream);
  std::fputc('\n', stream);
  std::fflush(stream);
  progress_open_ = false;
}

void Reporter::write_progress(std::string_view text, bool final) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (interactive_) {
    std::fputs("\r\033[K", stderr);
    std::fwrite(text.data(), 1, text.size(), stderr);
    if (final) std::fputc('\n', stderr);
    progress_open_ = !final;
  } else {
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fputc('\n', stderr);
  }
  std::fflush(stderr);
}

void Reporter::info(std::string_view message) {
  if (!quiet_) write_line(stderr, message);
  event("info", {{"message", std::string(message)}});
}

void Reporter::warn(std::string_view message) {
  write_line(stderr, fmt::format("warning: {}", message));
  event("warning", {{"message", std::string(message)}});
}

void Reporter::error(std::string_view message) {
  write_line(stderr, fmt::format("error: {}", message));
  event("error", {{"message", std::string(message)}});
}

void Reporter::print(std::string_view text) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (progress_open_ && interactive_) std::fputs("\r\033[K", stderr);
  progress_open_ = false;
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

void Reporter::event(std::string_view type, const nlohmann::json& fields) {
  if (!json_) return;
  nlohmann::json e = fields.is_object() ? fields : nlohmann::json::object();
  e["event"] = std::string(type);
  e["time"] = iso_time_now();
  const auto line = e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::lock_guard<std::mutex> lock(mutex_);
  std::fputs(line.c_str(), json_);
  std::fputc('\n', json_);
  std::fflush(json_);
}

Progress::Progress(Reporter& reporter, std::string label, std::int64_t total, std::string unit)
    : reporter_(reporter),
      label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      start_(std::chrono::steady_clock::now()),
      last_render_(start_) {}

Progress::~Progress() {
  // A loop left by an exception keeps its last line; only a finished loop prints the summary.
}

void Progress::advance(std::int64_t n) {
  done_.fetch_add(n);
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_render_).count();
  // Terminals refresh often; logs get a line every 10 s so batch-job logs stay readable.
  const double every = reporter_.interactive() ? 0.2 : 10.0;
  if (since >= every) {
    std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
    if (lock.owns_lock()) {
      last_render_ = now;
      lock.unlock();
      render(false);
    }
  }
}

void Progress::set_figure(std::string text) {
  std::lock_guard<std::mutex> lock(mutex_);
  figure_ = std::move(text);
}

void Progress::set_time_budget(double budget, double used) {
  std::lock_guard<std::mutex> lock(mutex_);
  time_budget_ = budget;
  time_left_ = std::max(0.0, budget - used);
  time_left_at_ = std::chrono::steady_clock::now();
}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double Progress::rate() const {
  const double t = elapsed_seconds();
  return t > 0 ? static_cast<double>(done_.load()) / t : 0.0;
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  render(true);
}

void Progress::render(bool final) {
  const auto done = done_.load();
  const double r = rate();
  std::string figure;
  double time_left = -1.0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    figure = figure_;
    if (time_left_ >= 0) {
      time_left = std::max(
          0.0, time_left_ - std::chrono::duration<double>(std::chrono::steady_clock::now() - time_left_at_).count());
    }
  }
  std::string line;
  const double steps_eta = r > 0 && total_ > 0 ? static_cast<double>(total_ - done) / r : NAN;
  if (time_left >= 0 && !(steps_eta <= time_left)) {
    // The clock ends this loop: "train: 1234 steps, 12m 3s of 45m 0s (27%) 2.1 step/s ETA 32m 57s".
    const double spent = time_budget_ - time_left;
    line =
        fmt::format("{}: {} {}s, {} of {} ({:.0f}%) {:.1f} {}/s {} {}", label_, done, unit_, format_duration(spent),
                    format_duration(time_budget_), 100.0 * spent / std::max(1e-9, time_budget_), r, unit_,
                    final ? "in " + format_duration(elapsed_seconds()) : "ETA " + format_duration(time_left), figure);
  } else if (total_ > 0) {
    const double pct = 100.0 * static_cast<double>(done) / static_cast<double>(total_);
    const double eta = steps_eta;
    line = fmt::format("{}: {}/{} ({:.0f}%) {:.1f} {}/s {} {}", label_, done, total_, pct, r, unit_,
                       final ? "in " + format_duration(elapsed_seconds()) : "ETA " + format_duration(eta), figure);
  } else {
    line = fmt::format("{}: {} {:.1f} {}/s {}", label_, done, r, unit_, figure);
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  if (!reporter_.quiet()) reporter_.write_progress(line, final);
  reporter_.event("progress", {{"label", label_},
                               {"done", done},
                               {"total", total_},
                               {"rate", r},
                               {"unit", unit_},
                               {"final", final},
                               {"figure", figure},
                               {"line", line}});
}

}  // namespace augment
