// What a run tells people and machines: messages, progress lines and JSON events.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace augment {

class Reporter {
 public:
  // `quiet` silences progress and info lines (warnings and errors still print).
  Reporter(bool quiet, const std::filesystem::path& log_json);
  ~Reporter();

  void info(std::string_view message);
  void warn(std::string_view message);
  void error(std::string_view message);
  // Plain output (tables, status) on stdout, kept even with --quiet.
  void print(std::string_view text);
  // One JSON object per line into --log-json; `fields` must be a JSON object.
  void event(std::string_view type, const nlohmann::json& fields);

  bool quiet() const { return quiet_; }
  bool interactive() const { return interactive_; }

 private:
  friend class Progress;
  void write_line(std::FILE* stream, std::string_view text);
  void write_progress(std::string_view text, bool final);

  bool quiet_;
  bool interactive_;
  std::FILE* json_ = nullptr;
  std::mutex mutex_;
  bool progress_open_ = false;
};

// A counter for a long loop: one updating line on a terminal, a line every few seconds in logs.
class Progress {
 public:
  Progress(Reporter& reporter, std::string label, std::int64_t total, std::string unit = "it");
  ~Progress();

  void advance(std::int64_t n = 1);
  // The loop's key figure, shown after the rate (e.g. "loss 0.0312").
  void set_figure(std::string text);
  // A time budget that may end the loop before `total`: `used` of `budget` seconds are spent (over
  // all resumed runs). The ETA shows whichever end comes first; when the budget ends the loop, the
  // line shows the time spent of the budget instead of a step count no one will reach.
  void set_time_budget(double budget, double used);
  void finish();
  double rate() const;
  double elapsed_seconds() const;
  std::int64_t done() const { return done_.load(); }

 private:
  void render(bool final);

  Reporter& reporter_;
  std::string label_, unit_;
  std::int64_t total_;
  std::atomic<std::int64_t> done_{0};
  std::chrono::steady_clock::time_point start_, last_render_;
  std::mutex mutex_;
  std::string figure_;
  double time_left_ = -1.0;  // < 0: no time budget
  double time_budget_ = 0.0;
  std::chrono::steady_clock::time_point time_left_at_;
  bool finished_ = false;
};

std::string format_duration(double seconds);

}  // namespace augment
