// `augment train` end to end through the binary: image folder -> cache -> train/model.pt.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "augment_test_paths.h"
#include "pipeline/base/fs_util.h"

namespace fs = std::filesystem;

namespace {

// `env`: variable assignments for the command, e.g. "AUGMENT_ASSUME_CPU_BF16=1 ".
int run(const std::string& args, const fs::path& log, const std::string& env = "") {
  const std::string cmd = env + AUGMENT_BINARY + " " + args + " > " + log.string() + " 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("train stage: trains from an image folder - writes the model files - and is up to date on rerun") {
  const auto root = fs::temp_directory_path() / ("augment_train_stage_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const auto input = root / "in", work = root / "work";
  for (int c = 0; c < 2; ++c) {
    const auto dir = input / (c == 0 ? "circle" : "bar");
    fs::create_directories(dir);
    for (int i = 0; i < 24; ++i) {
      cv::Mat img(20, 20, CV_8UC3, cv::Scalar(20 + i, 30, 40));
      if (c == 0)
        cv::circle(img, {10, 10}, 4 + i % 4, cv::Scalar(200, 80, 60), -1);
      else
        cv::rectangle(img, {3 + i % 5, 4}, {8 + i % 5, 16}, cv::Scalar(60, 200, 90), -1);
      cv::imwrite((dir / (std::to_string(i) + ".png")).string(), img);
    }
  }
  const std::string common = "--work " + work.string() + " --input " + input.string() +
                             " --cache.resolution 16 --train.channels 8 "
                             "--train.channel_mult 1,2 --train.blocks 1 --train.attention 8 --train.heads 2 "
                             "--train.diffusion_steps 50 --train.checkpoint_every 3 --threads 1";
  const auto log = root / "log.txt";
  REQUIRE(run("train " + common + " --train.steps 6 --train.batch_size 8", log) == 0);
  const auto log_text = augment::read_text_file(log);
  CAPTURE(log_text);
  CHECK(log_text.find("M parameters") != std::string::npos);
  CHECK(log_text.find("fewer than 20 training images") == std::string::npos);  // 20 each
  REQUIRE(fs::exists(work / "train" / "model.pt"));
  const auto meta = nlohmann::json::parse(augment::read_text_file(work / "train" / "model.json"));
  CHECK(meta["class_names"] == nlohmann::json({"bar", "circle"}));
  CHECK(meta["channels"] == 3);
  CHECK(meta["resolution"] == 16);
  CHECK(meta["conditioning"] == "cfg");
  CHECK(meta["diffusion"]["steps"] == 50);
  CHECK(meta["steps_trained"] == 6);
  CHECK(fs::exists(work / "train" / "loss.csv"));

  REQUIRE(run("train " + common + " --train.steps 6 --train.batch_size 8", log) == 0);
  CHECK(augment::read_text_file(log).find("up to date") != std::string::npos);

  // More steps: the stage is stale and continues from the last checkpoint instead of restarting.
  REQUIRE(run("train " + common + " --train.steps 8 --train.batch_size 8", log) == 0);
  CHECK(augment::read_text_file(log).find("resuming from") != std::string::npos);
  CHECK(nlohmann::json::parse(augment::read_text_file(work / "train" / "model.json"))["steps_trained"] == 8);

  // ac without a trained classifier names the command to run (alone: `train` would otherwise
  // train the classifier first, as its prerequisite).
  fs::remove_all(work / "classifier");
  CHECK(run("train " + common + " --train.steps 6 --train.batch_size 8 --train.conditioning ac --only train", log) ==
        66);
  CHECK(augment::read_text_file(log).find("augment classifier") != std::string::npos);
  // A batch larger than the train split: batches of the whole split, and a warning that says so.
  CHECK(run("train " + common + " --train.steps 6 --train.batch_size 500", log) == 0);
  CHECK(augment::read_text_file(log).find("fewer than train.batch_size = 500") != std::string::npos);

  // --precision auto trains and samples the denoiser in bf16 where the CPU has bf16 instructions
  // and in fp32 where it has not, and says why; AUGMENT_ASSUME_CPU_BF16 stands in for the flags,
  // so every branch runs on any machine.
  const auto with_flag = [&](const std::string& flag, const std::string& args) {
    REQUIRE(run(args, log, "AUGMENT_ASSUME_CPU_BF16=" + flag + " ") == 0);
    return augment::read_text_file(log);
  };
  const std::string two_steps = " --train.steps 2 --train.batch_size 8 --precision auto";
  for (const std::string flag : {"1", "0"}) {
    CAPTURE(flag);
    auto text = with_flag(flag, "train " + common + two_steps + " --force");
    CAPTURE(text);
    CHECK(text.find(flag == "1" ? "on cpu bf16 (--precision auto: this CPU has bf16 instructions"
                                : "on cpu fp32 (--precision auto: this CPU has no bf16 matrix instructions") !=
          std::string::npos);
    text = with_flag(flag, "sample " + common + two_steps + " --sample.policy synthetic=1 --sample.steps 2");
    CHECK(text.find(flag == "1" ? "on cpu bf16 (--precision auto: this CPU has bf16 instructions"
                                : "on cpu fp32 (--precision auto: this CPU has no bf16 matrix instructions") !=
          std::string::npos);
  }
  fs::remove_all(root);
}

TEST_CASE("train stage: a class with few images trains with a warning that names it") {
  const auto root = fs::temp_directory_path() / ("augment_train_small_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const auto input = root / "in";
  for (const auto& [name, n] : {std::pair<std::string, int>{"many", 30}, {"rare & small", 8}}) {
    fs::create_directories(input / name);
    for (int i = 0; i < n; ++i) {
      cv::Mat img(12, 12, CV_8UC3, cv::Scalar(10 * i % 250, name == "many" ? 200 : 40, 90));
      cv::imwrite((input / name / (std::to_string(i) + ".png")).string(), img);
    }
  }
  const auto log = root / "log.txt";
  REQUIRE(
      run("train --work " + (root / "work").string() + " --input " + input.string() +
              " --cache.resolution 8 --train.channels 8 --train.channel_mult 1,2 --train.blocks 1 --train.attention 4"
              " --train.heads 2 --train.diffusion_steps 20 --train.steps 1 --train.batch_size 4 --classifier.min_steps "
              "0 --classifier.epochs 1 "
              "--threads 1",
          log) == 0);
  const auto text = augment::read_text_file(log);
  CAPTURE(text);
  CHECK(text.find("1 of 2 classes have fewer than 20 training images: 'rare & small' (") != std::string::npos);
  CHECK(text.find("'many'") == std::string::npos);
  fs::remove_all(root);
}
