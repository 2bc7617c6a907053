// Data-parallel training end to end: real multi-process `augment train` jobs over Gloo on
// loopback (2 ranks), their agreement with one process, kills and preemption.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fmt/format.h>

#include "fixtures.h"
#include "models/checkpoint.h"
#include "models/denoiser_file.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/launch.h"
#include "stages/trainer.h"

using namespace augment;
using augment::test::TempDir;

namespace {

// Two classes of 16x16 images, 16 each: enough for global batches of 8.
void write_dataset(const fs::path& input) {
  for (int c = 0; c < 2; ++c) {
    const auto dir = input / (c == 0 ? "circle" : "bar");
    fs::create_directories(dir);
    for (int i = 0; i < 16; ++i) {
      cv::Mat img(16, 16, CV_8UC3, cv::Scalar(20 + 3 * i, 30, 40));
      if (c == 0)
        cv::circle(img, {8, 8}, 3 + i % 4, cv::Scalar(200, 80, 60), -1);
      else
        cv::rectangle(img, {2 + i % 5, 3}, {6 + i % 5, 13}, cv::Scalar(60, 200, 90), -1);
      cv::imwrite((dir / (std::to_string(i) + ".png")).string(), img);
    }
  }
}

// `augment train` on the tiny model; `extra` overrides or adds options ("--key value" pairs, or
// flags without a value such as --only train). fp32 and one thread: these tests compare ranks
// with one process to fp32 rounding, whatever the CPU (`auto` would pick bf16 on AVX512-BF16).
std::vector<std::string> train_args(const fs::path& input, const fs::path& work, int steps,
                                    const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  std::vector<std::pair<std::string, std::string>> opts = {{"--work", work.string()},
                                                           {"--input", input.string()},
                                                           {"--cache.resolution", "16"},
                                                           {"--train.channels", "8"},
                                                           {"--train.channel_mult", "1,2"},
                                                           {"--train.blocks", "1"},
                                                           {"--train.attention", "8"},
                                                           {"--train.heads", "2"},
                                                           {"--train.diffusion_steps", "50"},
                                                           {"--train.batch_size", "8"},
                                                           {"--train.steps", std::to_string(steps)},
                                                           {"--train.warmup", "2"},
                                                           {"--train.lr", "1e-3"},
                                                           {"--train.checkpoint_every", "1"},
                                                           {"--train.log_every", "1"},
                                                           {"--train.dropout", "0.2"},
                                                           {"--threads", "1"},
                                                           {"--precision", "fp32"},
                                                           {"--dist-timeout", "20"},
                                                           {"--classifier.epochs", "1"},
                                                           {"--classifier.min_steps", "0"}};
  for (const auto& [k, v] : extra) {
    auto it = std::find_if(opts.begin(), opts.end(), [&](const auto& o) { return o.first == k; });
    if (it != opts.end())
      it->second = v;
    else
      opts.emplace_back(k, v);
  }
  std::vector<std::string> a = {"train"};
  for (const auto& [k, v] : opts) {
    a.push_back(k);
    if (!v.empty()) a.push_back(v);
  }
  return a;
}

std::vector<std::string> rank_env(int rank, int world, int port) {
  return {"RANK=" + std::to_string(rank),
          "WORLD_SIZE=" + std::to_string(world),
          "LOCAL_RANK=" + std::to_string(rank),
          "LOCAL_WORLD_SIZE=" + std::to_string(world),
          "MASTER_ADDR=127.0.0.1",
          "MASTER_PORT=" + std::to_string(port),
          "SLURM_PROCID=",
          "SLURM_NTASKS="};
}

const std::vector<std::string> kSingle = {"RANK=", "WORLD_SIZE=", "SLURM_PROCID=", "SLURM_NTASKS="};

struct Job {
  std::vector<int> codes;
  std::vector<std::string> logs;
};

// Starts `world` ranks of `args` and waits for all (at most `seconds`).
Job run_job(const std::vector<std::string>& args, int world, const fs::path& logs, double seconds = 60) {
  const int port = free_loopback_port();
  std::vector<int> pids;
  for (int r = 0; r < world; ++r) {
    const auto log = logs / ("rank" + std::to_string(r) + ".log");
    pids.push_back(
        test::spawn_augment(args, log.string(), log.string() + ".err", world > 1 ? rank_env(r, world, port) : kSingle));
  }
  Job job;
  for (int r = 0; r < world; ++r) {
    job.codes.push_back(test::wait_exit(pids[static_cast<std::size_t>(r)], seconds));
    const auto log = logs / ("rank" + std::to_string(r) + ".log");
    job.logs.push_back(read_text_file(log) + read_text_file(log.string() + ".err"));
  }
  return job;
}

double max_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0;
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  return worst;
}

double max_difference(UNet& a, UNet& b) {
  return std::max(max_difference(a->parameters(), b->parameters()), max_difference(a->buffers(), b->buffers()));
}

long line_count(const fs::path& p) {
  if (!fs::exists(p)) return 0;
  const auto t = read_text_file(p);
  return static_cast<long>(std::count(t.begin(), t.end(), '\n'));
}

LoadedDenoiser load(const fs::path& work) {
  return load_denoiser(work / "train" / "model.pt", work / "train" / "model.json", torch::kCPU);
}

// The test dataset under root/in, cached at 16 px into the work folder root/w; returns the input.
fs::path cached_dataset(const TempDir& root) {
  const auto input = root / "in";
  write_dataset(input);
  REQUIRE(test::run_augment({"cache", "--work", (root / "w").string(), "--input", input.string(), "--cache.resolution",
                             "16", "--threads", "1"})
              .code == 0);
  return input;
}

}  // namespace

TEST_CASE(
    "data-parallel train: 2 Gloo ranks stay bit-identical - match 1 process - and resume with another world size") {
  TempDir root;
  const auto input = root / "in";
  write_dataset(input);
  const auto one = root / "one", two = root / "two", mixed = root / "mixed";
  fs::create_directories(root / "logs1");
  fs::create_directories(root / "logs2");
  fs::create_directories(root / "logs3");

  // One process, global batch 8.
  auto single = run_job(train_args(input, one, 6), 1, root / "logs1");
  CAPTURE(single.logs[0]);
  REQUIRE(single.codes[0] == 0);

  // Two ranks, 4 images each; rank 0 runs scan..classifier first while rank 1 waits for it.
  // Small buckets: the ~200 KB of gradients go through several all-reduces that overlap backward.
  auto job = run_job(train_args(input, two, 6, {{"--train.bucket_mb", "0.04"}}), 2, root / "logs2");
  CAPTURE(job.logs[0]);
  CAPTURE(job.logs[1]);
  REQUIRE(job.codes == std::vector<int>{0, 0});
  CHECK(job.logs[0].find("data-parallel: 2 ranks (torchrun, gloo backend), global batch 8 = 4 per rank") !=
        std::string::npos);
  CHECK(job.logs[0].find("weights identical on all 2 ranks") != std::string::npos);
  CHECK(job.logs[0].find("gradient all-reduce in 5 buckets") != std::string::npos);
  CHECK(job.logs[1].find("M parameters") == std::string::npos);  // rank 1 is quiet
  auto a = load(one), b = load(two);
  CHECK(a.meta.steps_trained == 6);
  CHECK(b.meta.steps_trained == 6);
  const double diff = max_difference(a.model, b.model);
  CAPTURE(diff);
  CHECK(diff < 1e-4);
  CHECK(line_count(one / "train" / "loss.csv") == 7);  // header + one row per step
  CHECK(line_count(two / "train" / "loss.csv") == 7);

  // Two ranks for 3 steps, then one process resumes to 6: the global batch is what counts.
  job = run_job(train_args(input, mixed, 3), 2, root / "logs3");
  CAPTURE(job.logs[0]);
  REQUIRE(job.codes == std::vector<int>{0, 0});
  auto resumed = run_job(train_args(input, mixed, 6), 1, root / "logs3");
  CAPTURE(resumed.logs[0]);
  REQUIRE(resumed.codes[0] == 0);
  CHECK(resumed.logs[0].find("resuming from") != std::string::npos);
  auto c = load(mixed);
  CHECK(c.meta.steps_trained == 6);
  const double diff_resumed = max_difference(a.model, c.model);
  CAPTURE(diff_resumed);
  CHECK(diff_resumed < 1e-4);
  // The comparison can fail: a run that stopped at step 3 is far from the 6-step weights.
  auto three = run_job(train_args(input, root / "three", 3), 1, root / "logs1");
  REQUIRE(three.codes[0] == 0);
  auto d = load(root / "three");
  CHECK(max_difference(a.model, d.model) > 1e-3);
}

TEST_CASE("data-parallel train: cbn batch norm statistics are synchronised across ranks") {
  TempDir root;
  const auto input = root / "in";
  write_dataset(input);
  fs::create_directories(root / "logs");
  // Prepare the cache once, then train alone (--only train) in copies of it.
  REQUIRE(test::run_augment({"cache", "--work", (root / "one").string(), "--input", input.string(),
                             "--cache.resolution", "16", "--threads", "1"})
              .code == 0);
  fs::copy(root / "one", root / "two", fs::copy_options::recursive);
  const std::vector<std::pair<std::string, std::string>> cbn = {{"--train.conditioning", "cbn"}, {"--only", "train"}};
  auto single = run_job(train_args(input, root / "one", 5, cbn), 1, root / "logs");
  CAPTURE(single.logs[0]);
  REQUIRE(single.codes[0] == 0);
  auto job = run_job(train_args(input, root / "two", 5, cbn), 2, root / "logs");
  CAPTURE(job.logs[0]);
  CAPTURE(job.logs[1]);
  REQUIRE(job.codes == std::vector<int>{0, 0});
  CHECK(job.logs[0].find("weights identical on all 2 ranks") != std::string::npos);
  auto a = load(root / "one"), b = load(root / "two");
  // With per-rank statistics (tried by disabling the synchronisation) the ranks' running
  // statistics differ and the job fails its own end-of-training comparison; synchronised, they
  // match the single process up to rounding, which Adam's normalised steps amplify for the
  // parameters whose gradients are near zero (measured: 1.9e-4 parameters, 3.6e-5 statistics).
  const double params = max_difference(a.model->parameters(), b.model->parameters());
  const double stats = max_difference(a.model->buffers(), b.model->buffers());
  CAPTURE(params);
  CAPTURE(stats);
  CHECK(stats < 2e-4);
  CHECK(params < 1e-3);
}

TEST_CASE("data-parallel train: under precision auto every rank takes rank 0 choice - on CPUs that differ") {
  TempDir root;
  const auto input = cached_dataset(root);
  const auto args = train_args(input, root / "w", 2, {{"--only", "train"}, {"--precision", "auto"}});
  // Rank 0 reads as a CPU with fast bf16, rank 1 as one without: on its own, rank 1 would pick fp32.
  const int port = free_loopback_port();
  std::vector<int> pids;
  for (int r = 0; r < 2; ++r) {
    auto env = rank_env(r, 2, port);
    env.push_back(std::string("AUGMENT_ASSUME_CPU_BF16=") + (r == 0 ? "1" : "0"));
    const auto log = root / ("rank" + std::to_string(r) + ".log");
    pids.push_back(test::spawn_augment(args, log.string(), log.string(), env));
  }
  std::vector<int> codes;
  for (int p : pids) codes.push_back(test::wait_exit(p, 60));
  const auto log0 = read_text_file(root / "rank0.log");
  CAPTURE(log0);
  REQUIRE(codes == std::vector<int>{0, 0});
  CHECK(log0.find("1 of 2 ranks would have chosen another precision on their own CPU; all train in bf16 as rank 0 "
                  "chose") != std::string::npos);
  // Mixed precisions would fail this check of the job itself.
  CHECK(log0.find("weights identical on all 2 ranks") != std::string::npos);
}

TEST_CASE("data-parallel train: a killed rank makes the other exit with a clear error") {
  TempDir root;
  const auto input = cached_dataset(root);
  const int port = free_loopback_port();
  const auto args = train_args(input, root / "w", 100000, {{"--only", "train"}, {"--dist-timeout", "10"}});
  const auto log0 = root / "rank0.log";
  const int p0 = test::spawn_augment(args, log0.string(), log0.string(), rank_env(0, 2, port));
  const int p1 = test::spawn_augment(args, "/dev/null", "/dev/null", rank_env(1, 2, port));
  // Wait until training runs (loss rows appear), then kill rank 1 without warning.
  const auto loss = root / "w" / "train" / "loss.csv";
  for (int i = 0; i < 600 && line_count(loss) < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::kill(p1, SIGKILL);
  CHECK(test::wait_exit(p1, 10) == 128 + SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  const int code = test::wait_exit(p0, 30);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto text = read_text_file(log0);
  CAPTURE(text);
  CHECK(code == 1);
  CHECK(seconds < 25);
  CHECK(text.find("rank 0 of 2: lost the other ranks of the data-parallel job") != std::string::npos);
}

TEST_CASE("preemption: SIGTERM or SIGUSR1 to a running train checkpoints - exits 75 - and the rerun continues") {
  TempDir root;
  const auto input = cached_dataset(root);
  const auto loss = root / "w" / "train" / "loss.csv";
  auto wait_rows = [&](long n) {
    for (int i = 0; i < 600 && line_count(loss) - 1 < n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  };
  // checkpoint_every is large: the checkpoint below comes from the signal.
  const std::vector<std::pair<std::string, std::string>> big = {
      {"--only", "train"}, {"--train.checkpoint_every", "100000"}, {"--train.checkpoint_minutes", "0"}};

  SUBCASE("one process, SIGTERM") {
    const auto log = root / "log";
    const int pid =
        test::spawn_augment(train_args(input, root / "w", 100000, big), log.string(), log.string(), kSingle);
    wait_rows(2);
    ::kill(pid, SIGTERM);
    const int code = test::wait_exit(pid, 30);
    const auto text = read_text_file(log);
    CAPTURE(text);
    CHECK(code == 75);
    CHECK(text.find("stopped by SIGTERM") != std::string::npos);
    const auto kept = list_checkpoints(root / "w" / "train" / "checkpoints");
    REQUIRE(kept.size() == 1);
    const long stopped_at = std::stol(kept[0].stem().string().substr(5));
    CHECK(stopped_at >= 2);
    // The rerun continues from there (a smaller budget just to finish quickly).
    auto rerun = test::run_augment(train_args(input, root / "w", static_cast<int>(stopped_at) + 2, big));
    CAPTURE(rerun.err);
    CHECK(rerun.code == 0);
    CHECK(rerun.err.find(fmt::format("(step {})", stopped_at)) != std::string::npos);
  }
  SUBCASE("two ranks, SIGUSR1 to rank 1 only") {
    const int port = free_loopback_port();
    const auto args = train_args(input, root / "w", 100000, big);
    const auto log0 = root / "rank0.log", log1 = root / "rank1.log";
    const int p0 = test::spawn_augment(args, log0.string(), log0.string(), rank_env(0, 2, port));
    const int p1 = test::spawn_augment(args, log1.string(), log1.string(), rank_env(1, 2, port));
    wait_rows(2);
    ::kill(p1, SIGUSR1);
    const int c1 = test::wait_exit(p1, 30), c0 = test::wait_exit(p0, 30);
    CAPTURE(read_text_file(log0));
    CAPTURE(read_text_file(log1));
    // Both ranks agree to stop after the same step; rank 0 writes the checkpoint.
    CHECK(c0 == 75);
    CHECK(c1 == 75);
    CHECK(list_checkpoints(root / "w" / "train" / "checkpoints").size() == 1);
  }
}
