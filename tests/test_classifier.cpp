// The auxiliary classifier: learning, freezing, saving and the `augment classifier` stage.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "augment_test_paths.h"
#include "models/classification_metrics.h"
#include "models/classifier.h"
#include "models/classifier_training.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "stages/cached_split.h"
#include "stages/classifier_stage.h"

namespace fs = std::filesystem;
using namespace augment;

namespace {

fs::path fresh_dir(const std::string& name) {
  const auto dir = fs::temp_directory_path() / fmt::format("augment-test-{}-{}", name, ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Class 0: a bright disc of random size and place; class 1: dark stripes of random period,
// phase and direction. Both on a random mid-grey background with noise, so the net must look
// at shape and brightness together rather than one pixel.
LabeledImages discs_and_stripes(int per_class, int size, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const int n = 2 * per_class;
  auto images = torch::empty({n, 1, size, size}, torch::kUInt8);
  auto labels = torch::empty({n}, torch::kInt64);
  auto* px = images.data_ptr<std::uint8_t>();
  for (int i = 0; i < n; ++i) {
    const int label = i % 2;
    labels[i] = label;
    const double background = 90 + 60 * u(gen);
    const double radius = size * (0.15 + 0.2 * u(gen)), cx = size * (0.3 + 0.4 * u(gen)),
                 cy = size * (0.3 + 0.4 * u(gen));
    const int period = 3 + static_cast<int>(u(gen) * 3), phase = static_cast<int>(u(gen) * period);
    const bool vertical = u(gen) < 0.5;
    for (int y = 0; y < size; ++y) {
      for (int x = 0; x < size; ++x) {
        double v = background;
        if (label == 0 && std::hypot(x - cx, y - cy) <= radius) v = 200 + 40 * u(gen);
        if (label == 1 && ((vertical ? x : y) + phase) % period == 0) v = background - 70;
        v += 20 * (u(gen) - 0.5);
        px[(static_cast<std::size_t>(i) * size + y) * size + x] = static_cast<std::uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  }
  return {images, labels};
}

ClassifierTrainSetup tiny_setup() {
  ClassifierTrainSetup s;
  s.options.width = 8;
  s.options.blocks = 1;
  s.options.epochs = 4;
  s.options.min_steps = 0;  // one pass per epoch, as the tests below count
  s.options.batch_size = 32;
  s.options.lr = 3e-3;
  s.class_names = {"disc", "stripes"};
  s.seed = 7;
  return s;
}

ClassifierConfig tiny_config(const std::string& norm) {
  ClassifierConfig c;
  c.channels = 3;
  c.resolution = 16;
  c.num_classes = 3;
  c.width = 8;
  c.blocks = 1;
  c.norm = norm;
  return c;
}

std::vector<torch::Tensor> snapshot(ClassifierNet& net) {
  std::vector<torch::Tensor> out;
  for (const auto& p : net->parameters()) out.push_back(p.detach().clone());
  for (const auto& b : net->buffers()) out.push_back(b.detach().clone());
  return out;
}

bool same_weights(ClassifierNet& a, ClassifierNet& b) {
  const auto x = snapshot(a), y = snapshot(b);
  if (x.size() != y.size()) return false;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!torch::equal(x[i], y[i])) return false;
  }
  return true;
}

// Runs the augment binary with `args`; returns its exit code. `on_start` gets the child's pid.
int run_augment(const std::vector<std::string>& args, const fs::path& log,
                const std::function<void(pid_t)>& on_start = {}) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> argv;
    std::string binary = AUGMENT_BINARY;
    argv.push_back(binary.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  if (on_start) on_start(pid);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST_CASE("confusion matrix scores: accuracy and balanced accuracy and the recall of an empty class") {
  ConfusionMatrix m(3);
  m.add(0, 0, 8);
  m.add(0, 1, 2);
  m.add(1, 1, 1);
  m.add(1, 0, 1);
  CHECK(m.total() == 12);
  CHECK(m.accuracy() == doctest::Approx(9.0 / 12));
  const auto r = m.recall();
  CHECK(r[0] == doctest::Approx(0.8));
  CHECK(r[1] == doctest::Approx(0.5));
  CHECK(std::isnan(r[2]));
  CHECK(m.balanced_accuracy() == doctest::Approx(0.65));  // the empty class does not count
  const auto j = metrics_to_json(m, {"a", "b", "c"});
  CHECK(j["per_class_recall"]["c"].is_null());
  CHECK(j["confusion_matrix"][0][1] == 2);
  CHECK_THROWS(m.add(3, 0));
}

TEST_CASE("classifier learns bright discs vs dark stripes to at least 95% test accuracy") {
  torch::set_num_threads(1);  // tiny nets: one thread is fastest, and immune to a busy machine
  const auto train = discs_and_stripes(160, 16, 1), val = discs_and_stripes(40, 16, 2),
             test = discs_and_stripes(100, 16, 3);
  auto result = train_classifier(train, val, tiny_setup());
  const auto scores = evaluate_classifier(result.net, test, torch::kCPU);
  MESSAGE("test accuracy " << scores.confusion.accuracy() << " after " << result.epochs_run << " epochs");
  CHECK(scores.confusion.accuracy() >= 0.95);
  CHECK(result.best_epoch >= 1);
  CHECK(result.best_epoch <= result.epochs_run);
  CHECK(!result.net->is_training());
}

TEST_CASE("training is deterministic and a resumed run ends bit-identical to an uninterrupted one") {
  torch::set_num_threads(1);  // tiny nets: one thread is fastest, and immune to a busy machine
  const auto train = discs_and_stripes(48, 16, 4), val = discs_and_stripes(16, 16, 5);
  auto setup = tiny_setup();
  setup.options.epochs = 3;
  setup.options.patience = 0;
  setup.options.balance = ClassBalance::kSampler;  // exercises the seeded sampler across the resume too
  auto whole = train_classifier(train, val, setup);

  const auto dir = fresh_dir("resume");
  setup.checkpoint = dir / "checkpoint" / "state.pt";
  setup.checkpoint_key = "k1";
  setup.after_epoch = [](const EpochRecord& r) {
    if (r.epoch == 1) throw StopRequested(SIGTERM);
  };
  CHECK_THROWS_AS(train_classifier(train, val, setup), StopRequested);
  REQUIRE(fs::exists(setup.checkpoint));
  setup.after_epoch = {};
  auto resumed = train_classifier(train, val, setup);
  CHECK(resumed.resumed_after_epoch == 1);
  CHECK(resumed.epochs_run == 3);
  CHECK(resumed.best_epoch == whole.best_epoch);
  CHECK(same_weights(resumed.net, whole.net));
  REQUIRE(resumed.history.size() == whole.history.size());
  for (std::size_t i = 0; i < whole.history.size(); ++i)
    CHECK(resumed.history[i].train_loss == whole.history[i].train_loss);

  // A checkpoint written for other data or options is not resumed.
  setup.checkpoint_key = "k2";
  auto fresh = train_classifier(train, val, setup);
  CHECK(fresh.resumed_after_epoch == 0);
  fs::remove_all(dir);
}

TEST_CASE(
    "frozen means frozen: a downstream step leaves the classifier bit-identical while gradients reach its input") {
  for (const std::string norm : {"group", "batch"}) {
    CAPTURE(norm);
    torch::manual_seed(11);
    const auto dir = fresh_dir("frozen-" + norm);
    ClassifierNet trained(tiny_config(norm));
    trained->train();
    for (int i = 0; i < 3; ++i)
      trained->forward(torch::randn({8, 3, 16, 16}));  // BatchNorm running stats move away from init
    save_classifier(trained, ClassifierMeta{tiny_config(norm), {"a", "b", "c"}}, dir / "model.pt");
    auto frozen = load_frozen_classifier(dir / "model.pt", {"a", "b", "c"}, 16, 3, torch::kCPU);
    CHECK(!frozen->is_training());
    for (const auto& p : frozen->parameters()) CHECK(!p.requires_grad());
    const auto before = snapshot(frozen);

    // A stand-in for the denoiser: its output goes through the classifier into the loss.
    torch::nn::Conv2d generator(torch::nn::Conv2dOptions(3, 3, 3).padding(1));
    std::vector<torch::Tensor> params = generator->parameters();
    for (const auto& p : frozen->parameters()) params.push_back(p);  // even a careless optimizer must not move them
    torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
    const auto generator_before = generator->weight.detach().clone();
    auto image = torch::tanh(generator->forward(torch::randn({4, 3, 16, 16})));
    image.retain_grad();
    const auto loss = torch::nn::functional::cross_entropy(frozen->forward(image), torch::tensor({0, 1, 2, 0}));
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();

    REQUIRE(image.grad().defined());
    CHECK(image.grad().abs().sum().item<double>() > 0);
    CHECK(!torch::equal(generator->weight, generator_before));
    const auto after = snapshot(frozen);
    REQUIRE(after.size() == before.size());
    for (std::size_t i = 0; i < after.size(); ++i) CHECK(torch::equal(after[i], before[i]));
    fs::remove_all(dir);
  }
}

TEST_CASE("save -> load round trip gives identical logits and features") {
  for (const std::string norm : {"group", "batch"}) {
    CAPTURE(norm);
    torch::manual_seed(12);
    const auto dir = fresh_dir("roundtrip-" + norm);
    ClassifierNet net(tiny_config(norm));
    net->train();
    for (int i = 0; i < 3; ++i) net->forward(torch::randn({8, 3, 16, 16}));
    net->eval();
    save_classifier(net, ClassifierMeta{tiny_config(norm), {"a", "b", "c"}}, dir / "model.pt");
    auto loaded = load_frozen_classifier(dir / "model.pt", {"a", "b", "c"}, 16, 3, torch::kCPU);
    const auto x = torch::rand({5, 3, 16, 16}) * 2 - 1;
    torch::NoGradGuard no_grad;
    const auto [logits, features] = net->forward_features(x);
    const auto [logits2, features2] = loaded->forward_features(x);
    CHECK(torch::equal(logits, logits2));
    CHECK(torch::equal(features, features2));
    CHECK(features.size(1) == loaded->feature_dim());
    fs::remove_all(dir);
  }
}

TEST_CASE("a classifier trained on other classes or resolution or channels is refused") {
  const auto dir = fresh_dir("mismatch");
  ClassifierNet net(tiny_config("group"));
  save_classifier(net, ClassifierMeta{tiny_config("group"), {"a", "b", "c"}}, dir / "model.pt");
  auto refused = [&](std::vector<std::string> names, int resolution, int channels) {
    try {
      load_frozen_classifier(dir / "model.pt", names, resolution, channels, torch::kCPU);
    } catch (const UserError& e) {
      CHECK(e.code() == ExitCode::kDataError);
      CHECK(std::string(e.what()).find("was trained on classes [a, b, c] at 16px x 3 channels") != std::string::npos);
      // The stages add the command that fixes it.
      const std::string hinted = [&] {
        try {
          with_hints([&] { return load_frozen_classifier(dir / "model.pt", names, resolution, channels, torch::kCPU); },
                     kRunClassifierFirst, kRerunClassifier);
        } catch (const UserError& h) {
          return std::string(h.what());
        }
        return std::string();
      }();
      CHECK(hinted.find("; rerun `augment classifier --force`") != std::string::npos);
      return true;
    }
    return false;
  };
  CHECK(refused({"a", "b", "x"}, 16, 3));
  CHECK(refused({"a", "b"}, 16, 3));
  CHECK(refused({"a", "b", "c"}, 32, 3));
  CHECK(refused({"a", "b", "c"}, 16, 1));
  CHECK_NOTHROW(load_frozen_classifier(dir / "model.pt", {"a", "b", "c"}, 16, 3, torch::kCPU));
  try {
    load_frozen_classifier(dir / "missing.pt", {"a", "b", "c"}, 16, 3, torch::kCPU);
    FAIL("a missing classifier was loaded");
  } catch (const UserError& e) {
    CHECK(e.code() == ExitCode::kNoInput);
  }
  fs::remove_all(dir);
}

TEST_CASE("bf16 training runs on this device with GroupNorm and BatchNorm") {
  torch::set_num_threads(1);  // tiny nets: one thread is fastest, and immune to a busy machine
  const auto train = discs_and_stripes(16, 16, 6);
  for (const std::string norm : {"group", "batch"}) {
    CAPTURE(norm);
    auto setup = tiny_setup();
    setup.options.norm = norm;
    setup.options.epochs = 1;
    setup.options.batch_size = 16;
    setup.precision = torch::kBFloat16;
    auto result = train_classifier(train, {}, setup);
    REQUIRE(result.history.size() == 1);
    CHECK(std::isfinite(result.history[0].train_loss));
    // The frozen model is fp32 whatever the training precision.
    CHECK((result.net->parameters().front().scalar_type() == torch::kFloat32));
  }
}

TEST_CASE(
    "augment classifier end to end: image folder to metrics.json and a loadable frozen model with a SIGTERM resume") {
  const auto dir = fresh_dir("e2e-classifier");
  const auto input = dir / "images", work = dir / "work";
  const auto data = discs_and_stripes(30, 16, 8);
  const char* names[] = {"disc", "stripes"};
  for (const auto* n : names) fs::create_directories(input / n);
  for (std::int64_t i = 0; i < data.size(); ++i) {
    const auto label = data.labels[i].item<std::int64_t>();
    cv::Mat img(16, 16, CV_8UC1, data.images[i].contiguous().data_ptr<std::uint8_t>());
    REQUIRE(cv::imwrite((input / names[label] / fmt::format("{:03}.png", i)).string(), img));
  }
  const std::vector<std::string> args = {"classifier",
                                         "--input",
                                         input.string(),
                                         "--work",
                                         work.string(),
                                         "--resolution",
                                         "16",
                                         "--channels",
                                         "1",
                                         "--classifier.width",
                                         "8",
                                         "--classifier.min_steps",
                                         "0",
                                         "--classifier.epochs",
                                         "40",
                                         "--classifier.patience",
                                         "0",
                                         "--classifier.batch_size",
                                         "8",
                                         "--threads",
                                         "1",
                                         "--subsample.val_fraction",
                                         "0.2",
                                         "--subsample.test_fraction",
                                         "0.2"};
  const auto log = dir / "log.txt";
  // Stopped by SIGTERM once the first epoch checkpoint exists: exit 75, checkpoint kept.
  const int stopped = run_augment(args, log, [&](pid_t pid) {
    const auto checkpoint = work / "classifier" / "checkpoint" / "state.pt";
    for (int i = 0; i < 6000 && !fs::exists(checkpoint); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ::kill(pid, SIGTERM);
  });
  INFO(read_text_file(log));
  CHECK(stopped == 75);
  CHECK(fs::exists(work / "classifier" / "checkpoint" / "state.pt"));
  CHECK(!fs::exists(work / "classifier" / "metrics.json"));

  REQUIRE(run_augment(args, log) == 0);
  const auto text = read_text_file(log);
  CHECK(text.find("resuming after epoch") != std::string::npos);
  const auto metrics = nlohmann::json::parse(read_text_file(work / "classifier" / "metrics.json"));
  CHECK(metrics["classes"] == nlohmann::json({"disc", "stripes"}));
  CHECK(metrics["epochs_run"] == 40);
  CHECK(metrics["train_images_per_second"].get<double>() > 0);
  for (const char* split : {"train", "val", "test"}) {
    CAPTURE(split);
    const auto& s = metrics["splits"][split];
    const auto images = s["images"].get<std::int64_t>();
    CHECK(images > 0);
    std::int64_t sum = 0;
    for (const auto& row : s["confusion_matrix"]) {
      for (const auto& c : row) sum += c.get<std::int64_t>();
    }
    CHECK(sum == images);
    CHECK(s["accuracy"].get<double>() >= 0.8);  // the classes are easy even for this tiny run
    CHECK(s["balanced_accuracy"].get<double>() <= 1.0);
    CHECK(s["per_class_recall"].size() == 2);
  }
  CHECK(!fs::exists(work / "classifier" / "checkpoint"));
  CHECK_NOTHROW(load_frozen_classifier(work / "classifier" / "model.pt", {"disc", "stripes"}, 16, 1, torch::kCPU));
  // Up to date now: a rerun does not train again.
  fs::remove(log);
  REQUIRE(run_augment(args, log) == 0);
  CHECK(read_text_file(log).find("classifier: up to date") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("classifier: every train image is used in every epoch even when the batch does not divide the split") {
  torch::set_num_threads(1);                        // tiny nets: one thread is fastest, and immune to a busy machine
  const auto train = discs_and_stripes(25, 16, 3);  // 50 images: 25 + 25 at batch 32 or 49, one batch at 64
  for (const std::int64_t batch : {32, 49, 64}) {
    CAPTURE(batch);
    auto setup = tiny_setup();
    setup.options.epochs = 2;
    setup.options.batch_size = batch;
    const auto result = train_classifier(train, {}, setup);
    REQUIRE(result.history.size() == 2);
    for (const auto& epoch : result.history) CHECK(epoch.train_images == 50);
  }
}

TEST_CASE("classifier: a small train split passes over its images several times per epoch to make min_steps steps") {
  ClassifierRecipe recipe;                     // the defaults: 20 epochs at batch 32, at least 1000 steps
  CHECK(recipe.passes_per_epoch(429) == 4);    // 14 steps a pass: 280 steps in 20 epochs
  CHECK(recipe.passes_per_epoch(1118) == 2);   // 35 steps a pass: 700
  CHECK(recipe.passes_per_epoch(10000) == 1);  // 313 steps a pass: more than enough
  recipe.min_steps = 0;
  CHECK(recipe.passes_per_epoch(429) == 1);

  torch::set_num_threads(1);
  const auto train = discs_and_stripes(25, 16, 3);  // 50 images: 2 steps a pass at batch 32
  auto setup = tiny_setup();
  setup.options.epochs = 2;
  setup.options.min_steps = 10;  // 4 steps in 2 epochs of one pass: 3 passes make 12
  auto result = train_classifier(train, {}, setup);
  REQUIRE(result.history.size() == 2);
  for (const auto& epoch : result.history) CHECK(epoch.train_images == 150);
  auto again = train_classifier(train, {}, setup);
  CHECK(same_weights(again.net, result.net));
}
