#include "stages/train_plan.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pipeline/base/fs_util.h"
#include "pipeline/base/report.h"

namespace augment {

namespace {

std::string clock_time(std::time_t t) {
  std::tm local{};
  localtime_r(&t, &local);
  char buf[32];
  std::strftime(buf, sizeof buf, "%H:%M", &local);
  return buf;
}

}  // namespace

TrainPlan plan_training(const TrainPlanInput& in, std::time_t now) {
  TrainPlan p;
  const double step_s = std::max(1e-9, in.step_seconds);
  const std::int64_t by_steps = std::max<std::int64_t>(0, in.max_steps - in.step);
  p.steps_left = by_steps;
  p.seconds_left = static_cast<double>(by_steps) * step_s;
  if (in.budget_seconds > 0) {
    const double budget_left = std::max(0.0, in.budget_seconds - in.elapsed_seconds);
    if (budget_left < p.seconds_left) {
      p.budget_ends_it = true;
      p.seconds_left = budget_left;
      p.steps_left = static_cast<std::int64_t>(budget_left / step_s);
    }
  }
  const auto total_steps = in.step + p.steps_left;
  p.epochs = in.train_images > 0
                 ? static_cast<double>(total_steps * in.images_per_step) / static_cast<double>(in.train_images)
                 : 0.0;
  const double ips = static_cast<double>(in.images_per_step) / step_s;
  const auto finish = clock_time(now + static_cast<std::time_t>(std::lround(p.seconds_left)));
  const std::string rate =
      fmt::format("{:.2f} M parameters at {:.1f} images/s", static_cast<double>(in.parameters) / 1e6, ips);
  if (p.budget_ends_it) {
    p.text = fmt::format(
        "plan: {}: the {} budget ({} left) ends training after about {} more steps (step {} of train.steps {}), "
        "at about {}; {:.1f} epochs of the {} training images",
        rate, format_duration(in.budget_seconds), format_duration(p.seconds_left), p.steps_left, total_steps,
        in.max_steps, finish, p.epochs, in.train_images);
  } else {
    p.text = fmt::format(
        "plan: {}: the {} steps left of train.steps {} take about {}, until about {}; {:.1f} epochs of the {} "
        "training images",
        rate, p.steps_left, in.max_steps, format_duration(p.seconds_left), finish, p.epochs, in.train_images);
  }
  if (in.synthetic_images > 0 && in.sample_seconds_per_image > 0) {
    p.sample_seconds = static_cast<double>(in.synthetic_images) * in.sample_seconds_per_image;
    p.text +=
        fmt::format("; then sampling the {} synthetic images of the balance plan takes about {} (done at about {})",
                    in.synthetic_images, format_duration(p.sample_seconds),
                    clock_time(now + static_cast<std::time_t>(std::lround(p.seconds_left + p.sample_seconds))));
  }
  if (in.evaluate_seconds > 0) {
    p.evaluate_seconds = in.evaluate_seconds;
    p.text += fmt::format(
        "; then `augment run` evaluates them in about {} ({} downstream classifier runs; done at about {})",
        format_duration(p.evaluate_seconds), in.evaluate_runs,
        clock_time(now +
                   static_cast<std::time_t>(std::lround(p.seconds_left + p.sample_seconds + p.evaluate_seconds))));
  }
  if (p.epochs < 1.0) {
    p.warning = fmt::format(
        "this plan sees each training image {:.2g} times on average (under one epoch): expect an undertrained "
        "model; raise {}",
        p.epochs, p.budget_ends_it ? "train.minutes" : "train.steps");
  }
  return p;
}

nlohmann::json plan_fields(const TrainPlan& plan, const TrainPlanInput& in) {
  return {{"steps_left", plan.steps_left},
          {"seconds_left", plan.seconds_left},
          {"budget_ends_training", plan.budget_ends_it},
          {"epochs", plan.epochs},
          {"images_per_second", static_cast<double>(in.images_per_step) / std::max(1e-9, in.step_seconds)},
          {"sample_seconds", plan.sample_seconds},
          {"synthetic_images", in.synthetic_images},
          {"evaluate_seconds", plan.evaluate_seconds},
          {"evaluate_runs", in.evaluate_runs}};
}

void write_train_plan(const std::filesystem::path& path, const TrainPlan& plan, const TrainPlanInput& in,
                      std::time_t now) {
  auto j = plan_fields(plan, in);
  j["text"] = plan.text;
  j["warning"] = plan.warning;
  j["made_at"] = static_cast<std::int64_t>(now);
  j["step"] = in.step;
  write_text_atomically(path, j.dump(2) + "\n");
}

std::string saved_plan_summary(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return {};
  try {
    const auto j = nlohmann::json::parse(read_text_file(path));
    const auto made = static_cast<std::time_t>(j.at("made_at").get<std::int64_t>());
    auto text = j.at("text").get<std::string>();
    if (text.rfind("plan: ", 0) == 0) text = text.substr(6);
    std::string out =
        fmt::format("train plan (made at {}, step {}): {}", clock_time(made), j.at("step").get<std::int64_t>(), text);
    if (const auto w = j.value("warning", ""); !w.empty()) out += "\n  warning: " + w;
    return out;
  } catch (const std::exception&) {
    return {};
  }
}

}  // namespace augment
