#include "stages/train_plan.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "pipeline/report.h"

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
  p.epochs = in.train_images > 0 ? static_cast<double>(total_steps * in.images_per_step) / static_cast<double>(in.train_images) : 0.0;
  const double ips = static_cast<double>(in.images_per_step) / step_s;
  const auto finish = clock_time(now + static_cast<std::time_t>(std::lround(p.seconds_left)));
  const std::string rate = fmt::format("{:.2f} M parameters at {:.1f} images/s", static_cast<double>(in.parameters) / 1e6, ips);
  if (p.budget_ends_it) {
    p.text = fmt::format("plan: {}: the {} budget ({} left) ends training after about {} more steps (step {} of train.steps {}), "
                         "at about {}; {:.1f} epochs of the {} training images",
                         rate, format_duration(in.budget_seconds), format_duration(p.seconds_left), p.steps_left, total_steps,
                         in.max_steps, finish, p.epochs, in.train_images);
  } else {
    p.text = fmt::format("plan: {}: the {} steps left of train.steps {} take about {}, until about {}; {:.1f} epochs of the {} "
                         "training images",
                         rate, p.steps_left, in.max_steps, format_duration(p.seconds_left), finish, p.epochs, in.train_images);
  }
  if (p.epochs < 1.0) {
    p.warning = fmt::format("this plan sees each training image {:.2g} times on average (under one epoch): expect an undertrained "
                            "model; raise {}",
                            p.epochs, p.budget_ends_it ? "train.minutes" : "train.steps");
  }
  return p;
}

}  // namespace augment
