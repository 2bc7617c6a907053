#include "emit_fixtures.h"

#include <signal.h>
#include <sys/resource.h>

#include <fstream>

#include <doctest/doctest.h>

#include "pipeline/base/csv.h"
#include "pipeline/base/report.h"
#include "stages/sample_plan.h"

namespace augment::test {

GeneratedImage fake_image(std::uint64_t seed) {
  GeneratedImage g;
  g.pixels = seeded_bytes(seed, kRes * kRes * 3);
  g.confidence = 0.5;
  return g;
}

SamplePlan prepare(const fs::path& input, const fs::path& work) {
  int seed = 0;
  for (const auto& [name, n] : kClasses) {
    for (int i = 0; i < n; ++i) write_image(input / name / ("img" + std::to_string(i) + ".png"), 12, 12, 3, ++seed);
  }
  // Two source folders with the same file name in one class: the emitted names must not clash.
  write_image(input / "R&D" / "sub" / "img0.png", 12, 12, 3, ++seed);
  auto r =
      run_augment({"cache", "--input", input.string(), "--work", work.string(), "--resolution", std::to_string(kRes),
                   "--quiet", "--subsample.val_fraction", "0", "--subsample.test_fraction", "0"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  return plan_for_work(work, parse_sample_policy("balance=max"));
}

void sample_fake(const fs::path& work, const SamplePlan& plan) {
  write_sample_plan(work / "sample" / "plan.json", plan);
  Reporter quiet(true, "");
  for (int k = 0; k < 2; ++k) {
    SamplingJob job;
    job.dir = work / "sample";
    job.run_seed = 0;
    job.shard = ShardSpec{k, 2};
    job.batch_size = 3;
    job.settings = SamplingSettings{"fake", 3, 2.0, "cfg", "ckpt-abc", kRes, 3};
    run_sampling(
        job, plan,
        [](const std::vector<SampleRequest>& reqs) {
          std::vector<GeneratedImage> out;
          for (const auto& q : reqs) out.push_back(fake_image(q.seed));
          return out;
        },
        quiet);
  }
}

std::vector<std::map<std::string, std::string>> read_csv(const fs::path& p) {
  std::ifstream in(p);
  const auto header = csv::read_row(in);
  std::vector<std::map<std::string, std::string>> rows;
  while (auto row = csv::read_row(in)) {
    std::map<std::string, std::string> m;
    for (std::size_t i = 0; i < header->size(); ++i) m[(*header)[i]] = i < row->size() ? (*row)[i] : "";
    rows.push_back(m);
  }
  return rows;
}

RunResult with_full_disk_at(std::uint64_t bytes, const std::function<RunResult()>& run) {
  ::signal(SIGXFSZ, SIG_IGN);
  rlimit old{};
  ::getrlimit(RLIMIT_FSIZE, &old);
  rlimit small = old;
  small.rlim_cur = bytes;
  ::setrlimit(RLIMIT_FSIZE, &small);
  auto r = run();
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, SIG_DFL);
  return r;
}

}  // namespace augment::test
