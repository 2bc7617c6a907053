// What the rest of a training run will take, from the rate measured on its first steps: shown
// before the budget is spent, so a user can stop a run that would not finish when they need it.
#pragma once

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace augment {

struct TrainPlanInput {
  std::int64_t parameters = 0;
  double step_seconds = 0;           // measured, per optimizer step
  std::int64_t images_per_step = 0;  // global batch x accumulation
  std::int64_t step = 0;             // steps done (all runs)
  std::int64_t max_steps = 0;        // train.steps
  double budget_seconds = 0;         // train.minutes x 60; 0: none
  double elapsed_seconds = 0;        // of the budget, over all runs
  std::int64_t train_images = 0;
  // What `augment sample` will draw after training (0: not known; no sampling estimate).
  std::int64_t synthetic_images = 0;
  double sample_seconds_per_image = 0;  // measured denoiser passes x passes per image
  // What the evaluate stage will take after sampling (0: not known), and the downstream classifier
  // runs that dominate it.
  double evaluate_seconds = 0;
  std::int64_t evaluate_runs = 0;
};

struct TrainPlan {
  std::int64_t steps_left = 0;
  double seconds_left = 0;
  bool budget_ends_it = false;  // the clock, not train.steps, ends training
  double epochs = 0;            // total steps x images per step / training images
  double sample_seconds = 0;    // the balance plan's sampling, after training (0: not known)
  double evaluate_seconds = 0;  // evaluate, after sampling (0: not known)
  std::string text;             // one line for the log
  std::string warning;          // non-empty when the plan is too short to learn much
};

TrainPlan plan_training(const TrainPlanInput& in, std::time_t now);

// The plan's figures, as the train_plan event and train/plan.json hold them.
nlohmann::json plan_fields(const TrainPlan& plan, const TrainPlanInput& in);
// train/plan.json, which `augment status` shows: the figures, the text and when it was made.
void write_train_plan(const std::filesystem::path& path, const TrainPlan& plan, const TrainPlanInput& in,
                      std::time_t now);
// "train plan (made at 14:02, step 10): plan: …" from that file; "" when there is none or it is
// unreadable (the plan is advice, not a record).
std::string saved_plan_summary(const std::filesystem::path& path);

}  // namespace augment
