// What the rest of a training run will take, from the rate measured on its first steps: shown
// before the budget is spent, so a user can stop a run that would not finish when they need it.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

namespace augment {

struct TrainPlanInput {
  std::int64_t parameters = 0;
  double step_seconds = 0;          // measured, per optimizer step
  std::int64_t images_per_step = 0; // global batch x accumulation
  std::int64_t step = 0;            // steps done (all runs)
  std::int64_t max_steps = 0;       // train.steps
  double budget_seconds = 0;        // train.minutes x 60; 0: none
  double elapsed_seconds = 0;       // of the budget, over all runs
  std::int64_t train_images = 0;
};

struct TrainPlan {
  std::int64_t steps_left = 0;
  double seconds_left = 0;
  bool budget_ends_it = false;  // the clock, not train.steps, ends training
  double epochs = 0;            // total steps x images per step / training images
  std::string text;             // one line for the log
  std::string warning;          // non-empty when the plan is too short to learn much
};

TrainPlan plan_training(const TrainPlanInput& in, std::time_t now);

}  // namespace augment
