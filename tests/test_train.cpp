#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <torch/torch.h>

#include "models/checkpoint.h"
#include "models/classifier.h"
#include "models/denoiser_file.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/report.h"
#include "pipeline/base/signals.h"
#include "stages/trainer.h"

using namespace augment;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("augment_test_train_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Two classes a model can tell apart: a bright square in the top-left or bottom-right corner of a
// dark, slightly noisy 16x16 image.
TrainData two_class_data(int per_class, int channels = 1) {
  torch::manual_seed(123);
  auto images = (torch::rand({2 * per_class, channels, 16, 16}) * 40).to(torch::kUInt8);
  auto labels = torch::empty({2 * per_class}, torch::kInt64);
  for (int i = 0; i < 2 * per_class; ++i) {
    const int c = i % 2;
    labels[i] = c;
    const int o = c == 0 ? 2 : 8;
    images[i].slice(1, o, o + 6).slice(2, o, o + 6).fill_(220);
  }
  return {images, labels, {"top_left", "bottom_right"}};
}

TrainOptions tiny_options() {
  TrainOptions o;
  o.steps = 8;
  o.batch_size = 8;
  o.lr = 2e-3;
  o.warmup = 5;
  o.channels = 8;
  o.channel_mult = {1, 2};
  o.blocks = 1;
  o.attention = {8};
  o.heads = 2;
  o.dropout = 0.1;
  o.diffusion_steps = 100;
  o.checkpoint_every = 100;
  o.keep_checkpoints = 3;
  o.log_every = 2;
  return o;
}

TrainerEnv env_for(const fs::path& dir) {
  TrainerEnv e;
  e.dir = dir;
  e.seed = 7;
  return e;
}

Reporter& quiet_reporter() {
  static Reporter r(true, "");
  return r;
}

double max_difference(torch::nn::Module& a, torch::nn::Module& b) {
  double worst = 0;
  auto pa = a.parameters(), pb = b.parameters();
  REQUIRE(pa.size() == pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) worst = std::max(worst, (pa[i] - pb[i]).abs().max().item<double>());
  auto ba = a.buffers(), bb = b.buffers();
  for (std::size_t i = 0; i < ba.size(); ++i) worst = std::max(worst, (ba[i] - bb[i]).abs().max().item<double>());
  return worst;
}

std::vector<double> loss_column(const fs::path& csv) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);
  std::vector<double> out;
  while (std::getline(in, line)) {
    const auto a = line.find(','), b = line.find(',', a + 1);
    out.push_back(std::stod(line.substr(a + 1, b - a - 1)));
  }
  return out;
}

}  // namespace

TEST_CASE("train: the loss decreases on a generated two-class dataset") {
  const auto dir = fresh_dir("loss");
  auto o = tiny_options();
  o.steps = 120;
  o.log_every = 20;
  o.dropout = 0.0;
  o.checkpoint_every = 20;
  o.keep_checkpoints = 3;
  Trainer trainer(o, two_class_data(32), env_for(dir), quiet_reporter());
  const auto s = trainer.run();
  CHECK(s.end_step == 120);
  const auto losses = loss_column(trainer.loss_csv());
  REQUIRE(losses.size() == 6);
  CAPTURE(losses.front());
  CAPTURE(losses.back());
  CHECK(losses.back() < 0.6 * losses.front());
  const auto kept = list_checkpoints(trainer.checkpoint_dir());  // train.keep_checkpoints caps them
  REQUIRE(kept.size() == 3);
  CHECK(kept[0].filename() == "step-00000120.pt");
  CHECK(kept[2].filename() == "step-00000080.pt");
  fs::remove_all(dir);
}

TEST_CASE("train: an interrupted and resumed run ends with the weights of an uninterrupted one") {
  for (const char* cond : {"cfg", "cbn"}) {
    CAPTURE(cond);
    auto o = tiny_options();
    o.conditioning = parse_name<Conditioning>(cond);
    const auto data = two_class_data(16);
    const auto straight_dir = fresh_dir(std::string("straight_") + cond),
               split_dir = fresh_dir(std::string("split_") + cond);

    Trainer straight(o, data, env_for(straight_dir), quiet_reporter());
    straight.run();

    // First half: a run with a smaller step budget (as if the user raised train.steps later).
    auto half = o;
    half.steps = 4;
    Trainer first(half, data, env_for(split_dir), quiet_reporter());
    CHECK(first.run().end_step == 4);
    // Then a stop request (SIGUSR1, as SLURM sends before preemption): one more step, a
    // checkpoint, and StopRequested.
    install_stop_handlers();
    std::raise(SIGUSR1);
    Trainer second(o, data, env_for(split_dir), quiet_reporter());
    CHECK_THROWS_AS(second.run(), StopRequested);
    clear_stop_request();
    CHECK(list_checkpoints(second.checkpoint_dir()).front().filename() == "step-00000005.pt");
    // And the rest in a fresh process-like trainer.
    Trainer third(o, data, env_for(split_dir), quiet_reporter());
    const auto s = third.run();
    CHECK(s.start_step == 5);
    CHECK(s.end_step == 8);

    CHECK(max_difference(*straight.model(), *third.model()) <= 1e-6);
    CHECK(max_difference(*straight.ema(), *third.ema()) <= 1e-6);
    CHECK(max_difference(*straight.model(), *first.model()) > 1e-6);  // the comparison can fail
    // The loss curve of the resumed run has one row per logged step, no duplicates.
    CHECK(loss_column(third.loss_csv()).size() == loss_column(straight.loss_csv()).size());
    fs::remove_all(straight_dir);
    fs::remove_all(split_dir);
  }
}

TEST_CASE("train: a truncated checkpoint is detected and the previous one is used") {
  auto o = tiny_options();
  o.steps = 6;
  o.checkpoint_every = 3;
  const auto data = two_class_data(16);
  const auto ref_dir = fresh_dir("trunc_ref"), dir = fresh_dir("trunc");
  Trainer reference(o, data, env_for(ref_dir), quiet_reporter());
  reference.run();

  Trainer first(o, data, env_for(dir), quiet_reporter());
  first.run();
  auto files = list_checkpoints(first.checkpoint_dir());
  REQUIRE(files.size() == 2);
  REQUIRE(files[0].filename() == "step-00000006.pt");
  fs::resize_file(files[0], fs::file_size(files[0]) / 2);  // as a crash during a non-atomic copy would leave it

  std::vector<std::string> skipped;
  auto found = restore_latest_checkpoint(
      first.checkpoint_dir(), torch::kCPU, [](torch::serialize::InputArchive&) { return RestoreResult::kRestored; },
      &skipped);
  REQUIRE(found.has_value());
  CHECK(found->path.filename() == "step-00000003.pt");
  REQUIRE(skipped.size() == 1);
  CHECK(skipped[0].find("step-00000006.pt") != std::string::npos);

  Trainer resumed(o, data, env_for(dir), quiet_reporter());
  const auto s = resumed.run();
  CHECK(s.start_step == 3);
  CHECK(s.end_step == 6);
  CHECK(max_difference(*reference.model(), *resumed.model()) <= 1e-6);
  fs::remove_all(ref_dir);
  fs::remove_all(dir);
}

TEST_CASE("train: a non-finite loss stops training and keeps the last good checkpoint") {
  auto o = tiny_options();
  o.steps = 4;
  o.checkpoint_every = 4;
  const auto data = two_class_data(16);
  const auto dir = fresh_dir("nan");
  Trainer good(o, data, env_for(dir), quiet_reporter());
  good.run();

  auto bad = o;
  bad.steps = 20;
  bad.lr = 1e30;  // the first update throws the weights to ~1e30, the next forward overflows
  bad.warmup = 0;
  bad.grad_clip = 0;
  Trainer diverging(bad, data, env_for(dir), quiet_reporter());
  CHECK_THROWS_WITH_AS(diverging.run(), doctest::Contains("diverged"), UserError);
  const auto files = list_checkpoints(diverging.checkpoint_dir());
  REQUIRE(!files.empty());
  CHECK(files.front().filename() == "step-00000004.pt");

  // The kept checkpoint resumes with a sane learning rate (optimizer settings may change).
  auto calm = o;
  calm.steps = 6;
  Trainer recovered(calm, data, env_for(dir), quiet_reporter());
  const auto s = recovered.run();
  CHECK(s.start_step == 4);
  CHECK(std::isfinite(s.last_loss));
  fs::remove_all(dir);
}

TEST_CASE("train: checkpoints written under other options are not resumed") {
  auto o = tiny_options();
  o.steps = 2;
  const auto data = two_class_data(16);
  const auto dir = fresh_dir("compat");
  Trainer a(o, data, env_for(dir), quiet_reporter());
  a.run();
  auto wider = o;
  wider.channels = 16;
  Trainer b(wider, data, env_for(dir), quiet_reporter());
  CHECK(b.run().start_step == 0);
  fs::remove_all(dir);
}

TEST_CASE("train: the time budget ends training early and counts resumed runs") {
  auto o = tiny_options();
  o.steps = 1000;
  o.minutes = 1e-9;  // spent by the first step
  const auto dir = fresh_dir("budget");
  Trainer first(o, two_class_data(16), env_for(dir), quiet_reporter());
  auto s = first.run();
  CHECK(s.time_budget_reached);
  CHECK(s.end_step == 1);
  Trainer again(o, two_class_data(16), env_for(dir), quiet_reporter());
  s = again.run();  // the budget was used up by the first run
  CHECK(s.start_step == 1);
  CHECK(s.end_step == 1);
  fs::remove_all(dir);
}

TEST_CASE("train: with a time budget the cosine learning rate decays with the clock") {
  auto o = tiny_options();
  o.steps = 1000000;  // never the limit: the step-based decay alone would stay near the peak
  // Long enough for the 4 logged steps below on a loaded machine: under `ctest -j 2` beside the
  // long training test, LibTorch 2.x took about a second per step of this model, and 3 s held 3.
  o.minutes = 0.2;
  o.warmup = 2;
  o.lr_schedule = "cosine";
  o.log_every = 1;
  const auto dir = fresh_dir("cosine_clock");
  Trainer trainer(o, two_class_data(16), env_for(dir), quiet_reporter());
  const auto s = trainer.run();
  REQUIRE(s.time_budget_reached);
  std::ifstream in(trainer.loss_csv());
  std::string line;
  std::getline(in, line);
  std::vector<double> lr;
  while (std::getline(in, line)) {
    const auto a = line.find(','), b = line.find(',', a + 1), c = line.find(',', b + 1);
    lr.push_back(std::stod(line.substr(b + 1, c - b - 1)));
  }
  REQUIRE(lr.size() >= 4);
  CHECK(*std::max_element(lr.begin(), lr.end()) > 0.5 * o.lr);
  CHECK(lr.back() < 0.1 * o.lr);  // the last step is at the end of the budget
  fs::remove_all(dir);
}

TEST_CASE("train: checkpoints also follow the clock") {
  auto o = tiny_options();
  o.steps = 5;
  o.checkpoint_every = 100;
  o.checkpoint_minutes = 1e-9;  // every step is "long enough"
  const auto dir = fresh_dir("clock");
  Trainer trainer(o, two_class_data(16), env_for(dir), quiet_reporter());
  trainer.run();
  const auto kept = list_checkpoints(trainer.checkpoint_dir());
  REQUIRE(kept.size() == 3);
  CHECK(kept[2].filename() == "step-00000003.pt");
  fs::remove_all(dir);
}

TEST_CASE("train: a split smaller than the batch size trains on batches of the whole split and says so") {
  auto o = tiny_options();
  o.batch_size = 64;
  o.steps = 2;
  const auto dir = fresh_dir("small");
  const auto log = dir / "events.jsonl";
  {
    Reporter reporter(true, log);  // warnings also go to the JSON event log, which the test reads
    Trainer trainer(o, two_class_data(8), env_for(dir), reporter);  // 16 images
    const auto summary = trainer.run();
    CHECK(summary.end_step == 2);
    CHECK(std::isfinite(summary.last_loss));
  }
  std::ifstream in(log);
  const std::string events((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CAPTURE(events);
  CHECK(events.find("fewer than train.batch_size = 64: every batch is 16 of them") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("train: ac trains against a frozen classifier - or a joint one that learns too") {
  const auto data = two_class_data(16, 3);
  for (const char* mode : {"frozen", "joint"}) {
    CAPTURE(mode);
    auto o = tiny_options();
    o.conditioning = Conditioning::kAc;
    o.ac_classifier = mode;
    o.ac_weight = 0.5;
    o.steps = 3;
    const auto dir = fresh_dir(std::string("ac_") + mode);
    auto env = env_for(dir);
    ClassifierConfig cc;
    cc.channels = 3;
    cc.resolution = 16;
    cc.num_classes = 2;
    cc.width = 8;
    cc.blocks = 1;
    ClassifierNet judge(cc);
    std::vector<torch::Tensor> before;
    for (auto& p : judge->parameters()) before.push_back(p.detach().clone());
    if (std::string(mode) == "frozen") env.frozen_classifier = judge;
    Trainer trainer(o, data, env, quiet_reporter());
    const auto s = trainer.run();
    CHECK(std::isfinite(s.last_loss));
    if (std::string(mode) == "frozen") {
      auto after = judge->parameters();
      for (std::size_t i = 0; i < after.size(); ++i) CHECK(torch::equal(after[i], before[i]));
    }
    fs::remove_all(dir);
  }
  auto o = tiny_options();
  o.conditioning = Conditioning::kAc;
  const auto dir = fresh_dir("ac_missing");
  CHECK_THROWS_WITH_AS(Trainer(o, data, env_for(dir), quiet_reporter()), doctest::Contains("augment classifier"),
                       UserError);
  fs::remove_all(dir);
}

TEST_CASE("train: the saved denoiser reloads with its meta and the EMA weights") {
  auto o = tiny_options();
  o.steps = 3;
  const auto dir = fresh_dir("save");
  Trainer trainer(o, two_class_data(16, 3), env_for(dir), quiet_reporter());
  trainer.run();
  save_denoiser(trainer.ema(), trainer.meta(), dir / "model.pt", dir / "model.json");
  auto loaded = load_denoiser(dir / "model.pt", dir / "model.json", torch::kCPU);
  CHECK(loaded.meta.class_names == std::vector<std::string>{"top_left", "bottom_right"});
  CHECK(loaded.meta.model.conditioning == Conditioning::kCfg);
  CHECK(loaded.meta.model.in_channels == 3);
  CHECK(loaded.meta.diffusion.steps == 100);
  CHECK(loaded.meta.steps_trained == 3);
  CHECK(max_difference(*loaded.model, *trainer.ema()) == 0.0);
  CHECK_THROWS_AS(load_denoiser(dir / "nothing.pt", dir / "model.json", torch::kCPU), UserError);
  fs::remove_all(dir);
}

TEST_CASE("train: class_power rebalances each epoch towards the rare classes") {
  // 90 / 9 / 1 images of three classes.
  std::vector<std::int64_t> labels;
  for (int c = 0; c < 3; ++c)
    labels.insert(labels.end(), std::vector<std::int64_t>::size_type(c == 0 ? 90 : c == 1 ? 9 : 1), c);
  auto counts = [&](double power, std::int64_t epoch) {
    const auto order = epoch_order(3, epoch, labels, power);
    REQUIRE(order.size() == labels.size());
    std::vector<int> k(3, 0);
    for (const auto i : order) ++k[static_cast<std::size_t>(labels[static_cast<std::size_t>(i)])];
    return k;
  };
  // 1: every image once.
  const auto plain = epoch_order(3, 0, labels, 1.0);
  CHECK(std::set<std::int64_t>(plain.begin(), plain.end()).size() == labels.size());
  CHECK(counts(1.0, 0) == std::vector<int>{90, 9, 1});
  // 0: uniform over classes; the single image of class 2 comes 33 or 34 times.
  const auto uniform = counts(0.0, 0);
  for (const int k : uniform) CHECK((k == 33 || k == 34));
  // 0.5: in proportion to sqrt(90) : 3 : 1 = 70.3 : 22.2 : 7.4 of 100 (largest remainder: 70, 22, 8).
  CHECK(counts(0.5, 0) == std::vector<int>{70, 22, 8});
  CHECK(counts(0.5, 1) == std::vector<int>{70, 22, 8});
  // A thinned class shows different images in another epoch; a repeated one cycles through all of its.
  auto class0 = [&](std::int64_t epoch) {
    std::set<std::int64_t> s;
    for (const auto i : epoch_order(3, epoch, labels, 0.5))
      if (labels[static_cast<std::size_t>(i)] == 0) s.insert(i);
    return s;
  };
  CHECK(class0(0).size() == 70);
  CHECK(class0(0) != class0(1));
  std::set<std::int64_t> class1;
  for (const auto i : epoch_order(3, 0, labels, 0.5))
    if (labels[static_cast<std::size_t>(i)] == 1) class1.insert(i);
  CHECK(class1.size() == 9);
  // Deterministic per (seed, epoch).
  CHECK(epoch_order(3, 2, labels, 0.5) == epoch_order(3, 2, labels, 0.5));
  CHECK(epoch_order(4, 2, labels, 0.5) != epoch_order(3, 2, labels, 0.5));
}
