// The training plan printed after the first steps.
#include <doctest/doctest.h>

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
