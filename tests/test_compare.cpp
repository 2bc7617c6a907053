// The study runner's parts that do not need a trained diffusion model: sharing the data and the
// classifier with a method's work dir, and the table built from each method's metrics.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/command/compare.h"

using namespace augment;
using namespace augment::test;
using nlohmann::json;

namespace {

ino_t inode(const fs::path& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? st.st_ino : 0;
}

}  // namespace

TEST_SUITE("compare") {
  TEST_CASE("a method's work dir shares the data and classifier and sees those stages done") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work";
    int seed = 0;
    for (const char* c : {"a", "b"}) {
      for (int i = 0; i < 10; ++i) write_image(input / c / (std::to_string(i) + ".png"), 12, 12, 3, ++seed);
    }
    std::vector<std::string> common = {"--input",
                                       input.string(),
                                       "--resolution",
                                       "8",
                                       "--threads",
                                       "1",
                                       "--classifier.min_steps",
                                       "0",
                                       "--classifier.epochs",
                                       "1",
                                       "--classifier.width",
                                       "4",
                                       "--subsample.test_fraction",
                                       "0.2"};
    auto cmd = [&](const std::string& command, const fs::path& w) {
      std::vector<std::string> args = {command, "--work", w.string()};
      args.insert(args.end(), common.begin(), common.end());
      return run_augment(args);
    };
    auto r = cmd("classifier", work);
    INFO(r.err);
    REQUIRE(r.code == 0);
    const auto method_dir = work / "compare" / "cfg";
    share_stage_outputs(work, method_dir, kSharedStages);
    CHECK(inode(method_dir / "cache" / "train.h5") == inode(work / "cache" / "train.h5"));
    CHECK(fs::is_regular_file(method_dir / "classifier" / "model.pt"));
    CHECK(fs::is_regular_file(method_dir / "records" / "classifier.json"));
    // Sharing again is a no-op; a replaced file (stages write a new file and rename it over the
    // old one, so a shared inode is never edited in place) is linked again.
    fs::remove(method_dir / "subsample" / "classes.json");
    write_bytes(method_dir / "subsample" / "classes.json", "{}");
    CHECK(read_bytes(work / "subsample" / "classes.json") != "{}");
    share_stage_outputs(work, method_dir, kSharedStages);
    CHECK(inode(method_dir / "subsample" / "classes.json") == inode(work / "subsample" / "classes.json"));

    r = cmd("status", method_dir);
    INFO(r.out);
    REQUIRE(r.code == 0);
    for (const char* stage : {"scan", "subsample", "cache", "classifier"}) {
      CAPTURE(stage);
      const auto line_start = r.out.find(std::string("\n") + stage + " ");
      REQUIRE(line_start != std::string::npos);
      CHECK(r.out.substr(line_start + 1, r.out.find('\n', line_start + 1) - line_start - 1).find(" done ") !=
            std::string::npos);
    }
    // An unknown method is refused with the accepted ones.
    r = run_augment({"compare", "--work", work.string(), "--input", input.string(), "--compare.methods", "none,dream"});
    CHECK(r.code == 78);
    CHECK(r.err.find("dream") != std::string::npos);
  }

  TEST_CASE("the study table has one row per method with the metrics and times it finds") {
    TempDir dir;
    const auto cmp = dir / "compare";
    const json metrics = json::parse(R"({
      "conditional_accuracy": {"accuracy": 0.9, "balanced_accuracy": 0.85},
      "frechet_distance": {"synthetic_vs_test": {"overall": 1.25}, "train_vs_test": {"overall": 0.5}},
      "classifier_score": {"synthetic": 3.5},
      "precision_recall": {"synthetic_vs_test": {"precision": 0.7, "recall": 0.6}},
      "downstream": {
        "variants": {"real": {"balanced_accuracy": {"mean": 0.8, "std": 0.01}},
                     "augmented": {"balanced_accuracy": {"mean": 0.83, "std": 0.02}},
                     "synthetic": {"balanced_accuracy": {"mean": 0.6, "std": null}}},
        "difference": {"augmented_minus_real": {"balanced_accuracy": {"mean": 0.03, "std": 0.015}}},
        "independent_conditional_accuracy": {"accuracy": {"mean": 0.75, "std": 0.02}}}
    })");
    write_bytes(cmp / "cfg" / "evaluate" / "metrics.json", metrics.dump());
    write_bytes(cmp / "cfg" / "records" / "train.json", json({{"seconds", 600.0}}).dump());
    write_bytes(cmp / "cfg" / "records" / "sample.json", json({{"seconds", 30.0}}).dump());
    write_bytes(cmp / "cfg" / "train" / "model.json", json({{"steps_trained", 799}}).dump());
    const auto table = compare_table_json(cmp, {"ac", "cfg"});
    REQUIRE(table["methods"].size() == 2);
    CHECK(table["methods"][0]["method"] == "ac");
    CHECK(table["methods"][0]["conditional_accuracy"].is_null());
    const auto& cfg = table["methods"][1];
    CHECK(cfg["conditional_accuracy"] == 0.9);
    CHECK(cfg["frechet_distance"] == 1.25);
    CHECK(cfg["frechet_distance_floor"] == 0.5);
    CHECK(cfg["downstream_augmented"]["mean"] == 0.83);
    CHECK(cfg["train_seconds"] == 600.0);
    CHECK(cfg["train_steps"] == 799);
    CHECK(cfg["conditional_accuracy_independent"] == 0.75);
    const auto md = compare_table_markdown(table);
    CHECK(md.find("| cfg | 90.0% | 75.0% | 1.250 (0.500) | 3.500 | 70.0% | 60.0% | 80.0% ± 1.0 | 83.0% ± 2.0 | 60.0% | "
                  "+3.0 ± 1.5 | "
                  "10.0 min | 799 | 0.5 min |") != std::string::npos);
    CHECK(md.find("| ac | – | – |") != std::string::npos);
  }
}
