// The training plan printed after the first steps.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "models/classifier_recipe.h"
#include "stages/evaluate_estimate.h"
#include "stages/train_plan.h"

using namespace augment;

namespace {

TrainPlanInput base() {
  TrainPlanInput in;
  in.parameters = 1'100'000;
  in.step_seconds = 0.5;  // 64 images per step: 128 images/s
  in.images_per_step = 64;
  in.step = 100;
  in.max_steps = 1'000'000;
  in.train_images = 1000;
  return in;
}

}  // namespace

TEST_CASE("train plan: a time budget that ends training first gives the steps that fit and the epochs") {
  auto in = base();
  in.budget_seconds = 45 * 60;
  in.elapsed_seconds = 15 * 60;  // 30 minutes left: 3600 steps at 0.5 s
  const auto p = plan_training(in, 0);
  CHECK(p.budget_ends_it);
  CHECK(p.steps_left == 3600);
  CHECK(p.seconds_left == doctest::Approx(1800));
  CHECK(p.epochs == doctest::Approx((100 + 3600) * 64 / 1000.0));
  CAPTURE(p.text);
  CHECK(p.text.find("1.10 M parameters at 128.0 images/s") != std::string::npos);
  CHECK(p.text.find("the 45m00s budget (30m00s left)") != std::string::npos);
  CHECK(p.text.find("3600 more steps") != std::string::npos);
  CHECK(p.warning.empty());
}

TEST_CASE("train plan: train.steps that end first - and a budget under one epoch warns before it is spent") {
  auto in = base();
  in.max_steps = 160;  // 60 steps left: 30 s
  in.budget_seconds = 3600;
  auto p = plan_training(in, 0);
  CHECK_FALSE(p.budget_ends_it);
  CHECK(p.steps_left == 60);
  CHECK(p.seconds_left == doctest::Approx(30));
  CHECK(p.text.find("the 60 steps left of train.steps 160 take about 30s") != std::string::npos);

  in = base();
  in.step = 0;
  in.train_images = 100'000;
  in.budget_seconds = 60;  // 120 steps x 64 = 7,680 of 100,000 images
  p = plan_training(in, 0);
  CHECK(p.budget_ends_it);
  CHECK(p.epochs == doctest::Approx(0.0768));
  CHECK(p.warning.find("under one epoch") != std::string::npos);
  CHECK(p.warning.find("train.minutes") != std::string::npos);
}

TEST_CASE("train plan: the balance plan's sampling time follows training") {
  auto in = base();
  in.max_steps = 160;  // 60 steps left at 0.5 s: 30 s
  in.synthetic_images = 4901;
  in.sample_seconds_per_image = 0.12;  // 588 s
  const auto p = plan_training(in, 0);
  CHECK(p.sample_seconds == doctest::Approx(588.12));
  CAPTURE(p.text);
  CHECK(p.text.find("then sampling the 4901 synthetic images of the balance plan takes about 9m48s") !=
        std::string::npos);
  in.synthetic_images = 0;  // not known: no sampling clause
  CHECK(plan_training(in, 0).text.find("sampling") == std::string::npos);
}

TEST_CASE("train plan: evaluate's time follows sampling - and is left out when not known") {
  auto in = base();
  in.max_steps = 160;
  in.synthetic_images = 4901;
  in.sample_seconds_per_image = 0.12;
  in.evaluate_seconds = 2065;
  in.evaluate_runs = 12;
  const auto p = plan_training(in, 0);
  CHECK(p.evaluate_seconds == doctest::Approx(2065));
  CAPTURE(p.text);
  CHECK(p.text.find("then `augment run` evaluates them in about 34m25s (12 downstream classifier runs") !=
        std::string::npos);
  CHECK(plan_fields(p, in).at("evaluate_seconds").get<double>() == doctest::Approx(2065));
  in.evaluate_seconds = 0;
  CHECK(plan_training(in, 0).text.find("evaluates") == std::string::npos);
}

TEST_CASE("evaluate estimate: the downstream runs of every variant and seed at the classifier's measured rate") {
  ClassifierRecipe recipe;
  recipe.min_steps = 0;  // as the 64 px icon run of docs/measurements.md trained them
  const EvaluateCounts icons{1118, 141, 141, 3330};
  const auto e = estimate_evaluate(recipe, 3, 20, icons, 290.7);
  // real, real_sampler, augmented, synthetic; 3 seeds.
  CHECK(e.runs == 12);
  // That run's evaluate stage took 2,065 s; the estimate counts every epoch (no early stopping).
  CHECK(e.seconds == doctest::Approx(static_cast<double>(e.images) / 290.7));
  CHECK(e.seconds > 2065 * 0.85);
  CHECK(e.seconds < 2065 * 1.15);

  // Without class balancing both balanced baselines are trained.
  recipe.balance = ClassBalance::kNone;
  CHECK(estimate_evaluate(recipe, 3, 20, icons, 290.7).runs == 15);
  recipe.balance = ClassBalance::kLoss;
  // No synthetic images: the real-only runs alone; no test split or no seeds: none at all.
  CHECK(estimate_evaluate(recipe, 3, 20, {1118, 141, 141, 0}, 290.7).runs == 6);
  const auto no_test = estimate_evaluate(recipe, 3, 20, {1118, 141, 0, 3330}, 290.7);
  CHECK(no_test.runs == 0);
  CHECK(no_test.images == 1118 + 3330);  // the scoring pass only
  CHECK(estimate_evaluate(recipe, 0, 20, icons, 290.7).runs == 0);
  // No measured rate (the classifier stage has not run): no time.
  CHECK(estimate_evaluate(recipe, 3, 20, icons, 0).seconds == 0);

  // A small split's extra passes per epoch (classifier.min_steps) are counted.
  recipe.min_steps = 1000;
  const EvaluateCounts small{429, 52, 52, 439};
  const auto longer = estimate_evaluate(recipe, 3, 20, small, 300);
  recipe.min_steps = 0;
  const auto one_pass = estimate_evaluate(recipe, 3, 20, small, 300);
  // Per seed and epoch: the 2 real-only runs see the 429 images 4 times instead of once, the
  // augmented run its 868 twice, the synthetic run its 439 4 times.
  CHECK(longer.images - one_pass.images == 3 * 20 * (2 * 3 * 429 + 1 * 868 + 3 * 439));
}
