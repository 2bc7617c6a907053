// The progress line a user reads while a stage runs.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "pipeline/base/report.h"

using namespace augment;
using augment::test::TempDir;

namespace {

// The progress lines written into --log-json (the same text the terminal shows).
std::vector<std::string> progress_lines(const std::filesystem::path& log) {
  std::vector<std::string> lines;
  std::ifstream in(log);
  for (std::string text; std::getline(in, text);) {
    const auto e = nlohmann::json::parse(text);
    if (e.value("event", "") == "progress") lines.push_back(e.at("line").get<std::string>());
  }
  return lines;
}

}  // namespace

TEST_CASE("progress: under a time budget the line shows time spent of the budget - not a step count no one reaches") {
  TempDir dir;
  const auto log = dir / "events.jsonl";
  {
    Reporter reporter(/*quiet=*/true, log);
    Progress progress(reporter, "train", 1000000, "step");
    progress.set_time_budget(/*budget=*/2700, /*used=*/900);  // 15 of 45 minutes spent in earlier runs
    progress.advance(3);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a rate at which 1,000,000 steps outlast the budget
    progress.finish();
  }
  const auto lines = progress_lines(log);
  REQUIRE_FALSE(lines.empty());
  CAPTURE(lines.back());
  CHECK(lines.back().find("train: 3 steps, 15m00s of 45m00s (33%)") == 0);
  CHECK(lines.back().find("1000000") == std::string::npos);
}

TEST_CASE("progress: a step count that ends first is shown as steps of the total") {
  TempDir dir;
  const auto log = dir / "events.jsonl";
  {
    Reporter reporter(/*quiet=*/true, log);
    Progress progress(reporter, "train", 4, "step");
    progress.set_time_budget(/*budget=*/1e6, /*used=*/0);
    progress.advance(4);
    progress.finish();
  }
  const auto lines = progress_lines(log);
  REQUIRE_FALSE(lines.empty());
  CAPTURE(lines.back());
  CHECK(lines.back().find("train: 4/4 (100%)") == 0);
}
