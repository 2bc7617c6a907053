// Training throughput of `augment train` with 1 and with W Gloo ranks on this machine, and the
// time per step the ranks wait for the gradient all-reduce. Writes a synthetic image folder,
// prepares the cache once, then trains the same model for the same steps and global batch with
// each world size (ranks started as separate processes over loopback, as torchrun would) and
// prints one JSON object with the figures from the runs' --log-json `train_summary` events.
//
//   ./build/bench_distributed --augment build/augment [--ranks 1,2] [--steps 6] [--batch 16]
//       [--resolution 32] [--channels 32] [--threads-per-rank 1] [--dir /tmp/augment-bench-dist]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "pipeline/base/launch.h"

namespace fs = std::filesystem;

namespace {

int spawn(const std::string& bin, const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
          const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<std::string> copy = args;
    std::vector<char*> argv{const_cast<char*>(bin.c_str())};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (!std::freopen(log.c_str(), "w", stderr) || !std::freopen("/dev/null", "w", stdout)) ::_exit(127);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_for(int pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

nlohmann::json last_event(const fs::path& jsonl, const std::string& type) {
  std::ifstream in(jsonl);
  std::string line;
  nlohmann::json found;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("event", "") == type) found = j;
  }
  return found;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt = {{"augment", "build/augment"},
                                            {"ranks", "1,2"},
                                            {"steps", "6"},
                                            {"batch", "16"},
                                            {"resolution", "32"},
                                            {"channels", "32"},
                                            {"threads-per-rank", "1"},
                                            {"dir", "/tmp/augment-bench-dist"}};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || !opt.count(k.substr(2))) {
      std::cerr << "unknown option " << k << "\n";
      return 64;
    }
    opt[k.substr(2)] = argv[i + 1];
  }
  const std::string bin = fs::absolute(opt["augment"]).string();
  const fs::path dir = opt["dir"], input = dir / "in", prepared = dir / "prepared";
  const int side = std::stoi(opt["resolution"]);
  if (!fs::exists(input)) {
    cv::RNG rng(1);
    for (int c = 0; c < 4; ++c) {
      fs::create_directories(input / fmt::format("class{}", c));
      for (int i = 0; i < 64; ++i) {
        cv::Mat img(side, side, CV_8UC3);
        rng.fill(img, cv::RNG::UNIFORM, 0, 255);
        cv::circle(img, {side / 2, side / 2}, side / 4 + c, cv::Scalar(60 * c, 200, 90), -1);
        cv::imwrite((input / fmt::format("class{}/{}.png", c, i)).string(), img);
      }
    }
  }
  const std::vector<std::string> common = {"--input",         input.string(), "--cache.resolution",
                                           opt["resolution"], "--threads",    opt["threads-per-rank"]};
  if (!fs::exists(prepared / "cache" / "train.h5")) {
    auto args = std::vector<std::string>{"cache", "--work", prepared.string()};
    args.insert(args.end(), common.begin(), common.end());
    if (wait_for(spawn(bin, args, {}, dir / "prepare.log")) != 0) {
      std::cerr << "preparing the cache failed; see " << (dir / "prepare.log") << "\n";
      return 1;
    }
  }

  nlohmann::json out = {{"steps", std::stoi(opt["steps"])},
                        {"global_batch", std::stoi(opt["batch"])},
                        {"resolution", side},
                        {"channels", std::stoi(opt["channels"])},
                        {"threads_per_rank", std::stoi(opt["threads-per-rank"])},
                        {"hardware_threads", static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN))},
                        {"runs", nlohmann::json::array()}};
  std::string list = opt["ranks"] + ",";
  for (std::size_t pos = 0, comma; (comma = list.find(',', pos)) != std::string::npos; pos = comma + 1) {
    const int world = std::stoi(list.substr(pos, comma - pos));
    const fs::path work = dir / fmt::format("work{}", world);
    fs::remove_all(work);
    fs::copy(prepared, work, fs::copy_options::recursive);
    fs::remove(work / ".lock");
    std::vector<std::string> args = {"train",
                                     "--work",
                                     work.string(),
                                     "--only",
                                     "train",
                                     "--log-json",
                                     (work / "log.jsonl").string(),
                                     "--train.steps",
                                     opt["steps"],
                                     "--train.batch_size",
                                     opt["batch"],
                                     "--train.channels",
                                     opt["channels"],
                                     "--train.log_every",
                                     "1",
                                     "--train.checkpoint_every",
                                     "1000000"};
    args.insert(args.end(), common.begin(), common.end());
    const int port = augment::free_loopback_port();
    const auto start = std::chrono::steady_clock::now();
    std::vector<int> pids;
    for (int r = 0; r < world; ++r) {
      std::map<std::string, std::string> env;
      if (world > 1) {
        env = {{"RANK", std::to_string(r)},       {"WORLD_SIZE", std::to_string(world)},
               {"LOCAL_RANK", std::to_string(r)}, {"LOCAL_WORLD_SIZE", std::to_string(world)},
               {"MASTER_ADDR", "127.0.0.1"},      {"MASTER_PORT", std::to_string(port)}};
      }
      pids.push_back(spawn(bin, args, env, work / fmt::format("rank{}.log", r)));
    }
    int failed = 0;
    for (const int pid : pids) failed |= wait_for(pid);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (failed) {
      std::cerr << "training with " << world << " ranks failed; see " << work << "/rank*.log\n";
      return 1;
    }
    const auto summary = last_event(work / "log.jsonl", "train_summary");
    out["runs"].push_back({{"ranks", world},
                           {"images_per_second", summary.value("images_per_second", 0.0)},
                           {"allreduce_ms_per_step", summary.value("allreduce_ms_per_step", 0.0)},
                           {"wall_seconds_with_startup", wall}});
  }
  std::cout << out.dump(2) << "\n";
  return 0;
}
