// `augment sample` end to end: the same images whatever the batch size and sharding, resumable,
// and shards that merge in `emit`.
#include <filesystem>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "augment_test_paths.h"
#include "fixtures.h"
#include "pipeline/base/fs_util.h"

using namespace augment::test;

namespace {

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

std::vector<fs::path> pngs(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir / "sample" / "images")) {
    if (e.path().extension() == ".png") out.push_back(fs::relative(e.path(), dir));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE(
    "sample stage: byte-identical images across batch sizes and shards - resume regenerates nothing - emit merges "
    "shards") {
  TempDir tmp;
  for (int i = 0; i < 20; ++i) write_image(tmp / ("in/round/" + std::to_string(i) + ".png"), 20, 20, 3, i);
  for (int i = 0; i < 8; ++i) write_image(tmp / ("in/flat & wide/" + std::to_string(i) + ".png"), 24, 18, 1, 100 + i);
  const std::vector<std::string> common = {"--input",
                                           (tmp / "in").string(),
                                           "--cache.resolution",
                                           "16",
                                           "--train.channels",
                                           "8",
                                           "--train.channel_mult",
                                           "1,2",
                                           "--train.blocks",
                                           "1",
                                           "--train.attention",
                                           "8",
                                           "--train.heads",
                                           "2",
                                           "--train.diffusion_steps",
                                           "40",
                                           "--train.steps",
                                           "4",
                                           "--train.batch_size",
                                           "8",
                                           "--classifier.min_steps",
                                           "0",
                                           "--classifier.epochs",
                                           "1",
                                           "--sample.steps",
                                           "4",
                                           "--threads",
                                           "1"};
  const auto a = tmp / "a", b = tmp / "b";
  auto r = run_augment(with({"sample", "--work", a.string(), "--sample.batch_size", "64"}, common));
  REQUIRE_MESSAGE(r.code == 0, r.err);
  const auto plan = nlohmann::json::parse(augment::read_text_file(a / "sample" / "plan.json"));
  CAPTURE(plan.dump());
  const auto files = pngs(a);
  REQUIRE(files.size() > 4);

  // Rerun: the stage is up to date; forced, every image is reused.
  r = run_augment(with({"sample", "--work", a.string(), "--force"}, common));
  REQUIRE(r.code == 0);
  CHECK(r.err.find("already done by an earlier run are kept") != std::string::npos);
  CHECK(r.err.find("generated ") == std::string::npos);

  // Shards in one work dir at the same time, another batch size: the same bytes.
  r = run_augment(with({"train", "--work", b.string()}, common));
  REQUIRE(r.code == 0);
  std::vector<int> pids;
  for (int k = 0; k < 2; ++k) {
    pids.push_back(spawn_augment(
        with({"sample", "--work", b.string(), "--sample.shard", std::to_string(k) + "/2", "--sample.batch_size", "3"},
             common),
        (tmp / ("out" + std::to_string(k))).string(), (tmp / ("err" + std::to_string(k))).string()));
  }
  for (int k = 0; k < 2; ++k) {
    CAPTURE(read_bytes(tmp / ("err" + std::to_string(k))));
    CHECK(wait_exit(pids[static_cast<std::size_t>(k)], 120) == 0);
  }
  std::string listed;
  for (const auto& f : pngs(b)) listed += f.string() + " ";
  CAPTURE(listed);
  CAPTURE(read_bytes(tmp / "err0"));
  REQUIRE(pngs(b) == files);
  for (const auto& f : files) CHECK(read_bytes(a / f) == read_bytes(b / f));

  // emit merges the shards; with a journal gone it names the missing shard.
  r = run_augment(with({"emit", "--work", b.string(), "--output", (tmp / "out").string()}, common));
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(fs::exists(tmp / "out" / "flat & wide"));
  fs::remove(b / "sample" / "journal-1-of-2.jsonl");
  r = run_augment(with({"emit", "--work", b.string(), "--output", (tmp / "out2").string()}, common));
  CHECK(r.code != 0);
  CHECK(r.err.find("--shard 1/2") != std::string::npos);
  CHECK(!fs::exists(tmp / "out2"));

  // A shard before training is done refuses instead of racing the other shards to train.
  r = run_augment(with({"sample", "--work", (tmp / "c").string(), "--sample.shard", "0/2"}, common));
  CHECK(r.code == 66);
  CHECK(r.err.find("run `augment scan`") != std::string::npos);
}

TEST_CASE("tools/simulate_array.sh: a 3-way array run emits the same dataset as one process") {
  TempDir tmp;
  for (int i = 0; i < 14; ++i) write_image(tmp / ("in/a/" + std::to_string(i) + ".png"), 20, 20, 3, i);
  for (int i = 0; i < 5; ++i) write_image(tmp / ("in/b b/" + std::to_string(i) + ".png"), 20, 20, 3, 50 + i);
  std::string common =
      " --input " + (tmp / "in").string() +
      " --cache.resolution 16 --train.channels 8 --train.channel_mult 1,2 --train.blocks 1 --train.attention 8"
      " --train.heads 2 --train.diffusion_steps 40 --train.steps 3 --train.batch_size 8 --classifier.min_steps 0 "
      "--classifier.epochs 1"
      " --sample.steps 3 --evaluate.seeds 1 --evaluate.downstream_epochs 1 --evaluate.tsne_iterations 300"
      " --threads 1 --quiet";
  auto r = run_augment({"emit",
                        "--work",
                        (tmp / "one").string(),
                        "--output",
                        (tmp / "out-one").string(),
                        "--input",
                        (tmp / "in").string(),
                        "--cache.resolution",
                        "16",
                        "--train.channels",
                        "8",
                        "--train.channel_mult",
                        "1,2",
                        "--train.blocks",
                        "1",
                        "--train.attention",
                        "8",
                        "--train.heads",
                        "2",
                        "--train.diffusion_steps",
                        "40",
                        "--train.steps",
                        "3",
                        "--train.batch_size",
                        "8",
                        "--classifier.min_steps",
                        "0",
                        "--classifier.epochs",
                        "1",
                        "--sample.steps",
                        "3",
                        "--evaluate.seeds",
                        "1",
                        "--evaluate.downstream_epochs",
                        "1",
                        "--evaluate.tsne_iterations",
                        "300",
                        "--threads",
                        "1",
                        "--quiet"});
  REQUIRE_MESSAGE(r.code == 0, r.err);
  r = run_shell("AUGMENT=" + std::string(AUGMENT_BINARY) + " LOG_DIR=" + (tmp / "logs").string() + " bash " +
                (fs::path(AUGMENT_SOURCE_DIR) / "tools" / "simulate_array.sh").string() + " 3 --work " +
                (tmp / "three").string() + " --output " + (tmp / "out-three").string() + common);
  const std::string script_log = r.out + r.err;
  REQUIRE_MESSAGE(r.code == 0, script_log);
  CHECK(fs::exists(tmp / "three" / "sample" / "journal-2-of-3.jsonl"));
  CHECK(read_bytes(tmp / "out-one" / "manifest.csv") == read_bytes(tmp / "out-three" / "manifest.csv"));
  int synthetic = 0;
  for (const auto& e : fs::recursive_directory_iterator(tmp / "out-one")) {
    const auto name = e.path().filename().string();
    if (e.path().extension() != ".png" || name.rfind("real_", 0) == 0) continue;
    ++synthetic;
    CHECK(read_bytes(e.path()) == read_bytes(tmp / "out-three" / fs::relative(e.path(), tmp / "out-one")));
  }
  CHECK(synthetic == 9);
}
