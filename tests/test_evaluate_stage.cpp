// `augment evaluate` end to end on a tiny generated dataset: the binary trains the classifier, a
// fake generator fills the sample store with noisy copies of real train images of the requested
// class, then evaluate writes metrics and the report and emit carries both into the output.
#include <doctest/doctest.h>

#include <cmath>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fixtures.h"
#include "manifests/image_cache.h"
#include "manifests/sample_store.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/report.h"
#include "stages/evaluate_figures.h"
#include "stages/evaluate_report.h"
#include "stages/sample_plan.h"
#include "stages/sampling_driver.h"

using namespace augment;
using namespace augment::test;
using nlohmann::json;

namespace {

constexpr int kRes = 16;
const std::vector<std::pair<std::string, int>> kClasses = {{"disc", 20}, {"bar & <tag>", 14}, {"ñandú", 10}};

// Each class a different shape and colour, so a few epochs separate them.
void write_dataset(const fs::path& input) {
  for (std::size_t c = 0; c < kClasses.size(); ++c) {
    const auto dir = input / kClasses[c].first;
    fs::create_directories(dir);
    for (int i = 0; i < kClasses[c].second; ++i) {
      cv::Mat img(kRes, kRes, CV_8UC3, cv::Scalar(30 + 3 * i, 40, 50));
      if (c == 0) cv::circle(img, {8, 8}, 3 + i % 3, cv::Scalar(40, 60, 230), -1);
      if (c == 1) cv::rectangle(img, {2 + i % 4, 3}, {6 + i % 4, 13}, cv::Scalar(60, 220, 70), -1);
      if (c == 2) cv::line(img, {1, 1 + i % 3}, {14, 14 - i % 3}, cv::Scalar(230, 200, 40), 2);
      cv::imwrite((dir / (std::to_string(i) + ".png")).string(), img);
    }
  }
}

// Synthetic images: a real train image of the requested class with a little seeded noise.
void sample_noisy_copies(const fs::path& work) {
  const auto plan = plan_for_work(work, parse_sample_policy("per_class=16"));
  write_sample_plan(work / "sample" / "plan.json", plan);
  CacheReader cache(work / "cache" / "train.h5");
  const auto bytes = cache.image_bytes();
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(cache.size()) * bytes);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(cache.size()));
  cache.read(0, cache.size(), pixels.data(), labels.data(), nullptr);
  SamplingJob job;
  job.dir = work / "sample";
  job.batch_size = 8;
  job.settings = SamplingSettings{"fake", 1, 0.0, "cfg", "ckpt", kRes, 3};
  Reporter quiet(true, "");
  run_sampling(
      job, plan,
      [&](const std::vector<SampleRequest>& reqs) {
        std::vector<GeneratedImage> out;
        for (const auto& q : reqs) {
          std::vector<std::size_t> of_class;
          for (std::size_t i = 0; i < labels.size(); ++i) {
            if (labels[i] == q.label) of_class.push_back(i);
          }
          REQUIRE(!of_class.empty());
          const auto src = of_class[static_cast<std::size_t>(q.index) % of_class.size()];
          GeneratedImage g;
          g.pixels.assign(pixels.begin() + static_cast<std::ptrdiff_t>(src * bytes),
                          pixels.begin() + static_cast<std::ptrdiff_t>((src + 1) * bytes));
          std::uint64_t x = q.seed;
          for (auto& p : g.pixels) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            p = static_cast<std::uint8_t>(std::clamp<int>(p + static_cast<int>(x >> 61) - 4, 0, 255));
          }
          out.push_back(std::move(g));
        }
        return out;
      },
      quiet);
}

// Every src="..." and href="..." of a page.
std::vector<std::string> links_of(const std::string& html) {
  std::vector<std::string> out;
  const std::regex link(R"((?:src|href)="([^"]*)\")");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), link); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1]);
  return out;
}

}  // namespace

TEST_SUITE("evaluate") {
  TEST_CASE("evaluate writes metrics and a report page that links only existing files and emit carries them") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work", out = dir / "out";
    write_dataset(input);
    const std::vector<std::string> common = {"--input",
                                             input.string(),
                                             "--work",
                                             work.string(),
                                             "--resolution",
                                             std::to_string(kRes),
                                             "--subsample.val_fraction",
                                             "0.2",
                                             "--subsample.test_fraction",
                                             "0.25",
                                             "--threads",
                                             "1",
                                             "--classifier.min_steps",
                                             "0",
                                             "--classifier.epochs",
                                             "4",
                                             "--classifier.width",
                                             "8",
                                             "--quiet"};
    auto cmd = [&](std::vector<std::string> head) {
      head.insert(head.end(), common.begin(), common.end());
      return run_augment(head);
    };
    auto r = cmd({"classifier"});
    INFO(r.err);
    REQUIRE(r.code == 0);

    // Without samples evaluate names what to run.
    r = cmd({"evaluate", "--only", "evaluate"});
    CHECK(r.code == 66);
    CHECK(r.err.find("sample") != std::string::npos);

    sample_noisy_copies(work);
    write_bytes(work / "train" / "loss.csv",
                "step,loss,lr,images_per_second\n10,0.9,1e-4,50\n20,0.5,1e-4,50\n30,0.31,1e-4,50\n40,0.2,1e-4,51\n");
    const std::vector<std::string> eval = {"evaluate", "--only",
                                           "evaluate", "--evaluate.seeds",
                                           "1",        "--evaluate.downstream_epochs",
                                           "2",        "--evaluate.tsne_points",
                                           "120",      "--evaluate.tsne_iterations",
                                           "300",      "--evaluate.grid",
                                           "4"};
    r = cmd(eval);
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.out.find("conditional accuracy") != std::string::npos);

    const auto metrics = json::parse(read_bytes(work / "evaluate" / "metrics.json"));
    // per_class=16 for 3 classes that all have fewer real train images than that.
    CHECK(metrics["images"]["synthetic"].get<int>() == 3 * 16 - metrics["images"]["real_train"].get<int>());
    const auto& ca = metrics["conditional_accuracy"];
    CHECK(ca["images"] == metrics["images"]["synthetic"]);
    // Noisy copies of well-separated real images: the classifier recognises most.
    CHECK(ca["accuracy"].get<double>() >= 0.6);
    const double fd = metrics["frechet_distance"]["synthetic_vs_test"]["overall"].get<double>();
    CHECK(std::isfinite(fd));
    CHECK(fd >= 0);
    CHECK(metrics["frechet_distance"]["train_vs_test"]["overall"].get<double>() >= 0);
    // Every class has synthetic images here, so the floor over their classes is the floor over all.
    CHECK(metrics["frechet_distance"]["train_vs_test"]["overall"].get<double>() ==
          doctest::Approx(metrics["frechet_distance"]["train_vs_test"]["overall_all_classes"].get<double>()));
    const double cs = metrics["classifier_score"]["synthetic"].get<double>();
    CHECK(cs >= 1.0);
    CHECK(cs <= 3.0 + 1e-9);
    for (const char* key : {"precision", "recall"}) {
      const double v = metrics["precision_recall"]["synthetic_vs_test"][key].get<double>();
      CHECK(v >= 0.0);
      CHECK(v <= 1.0);
    }
    const auto& down = metrics["downstream"];
    REQUIRE(down.is_object());
    // The recipe balances by loss, so class-balanced sampling is the second real-only baseline.
    for (const char* v : {"real", "real_sampler", "augmented", "synthetic"}) {
      CAPTURE(v);
      REQUIRE(down["variants"].contains(v));
      CHECK(down["variants"][v]["runs"] == 1);
      CHECK(down["variants"][v]["accuracy"]["runs"].size() == 1);
    }
    CHECK(down["variants"]["augmented"]["train_images"] ==
          down["variants"]["real"]["train_images"].get<int>() +
              down["variants"]["synthetic"]["train_images"].get<int>());
    CHECK(down["difference"].contains("augmented_minus_real"));
    CHECK(down["difference"].contains("augmented_minus_real_sampler"));
    CHECK_FALSE(down["variants"].contains("real_loss"));
    CHECK(down["variants"]["real_sampler"]["train_images"] == down["variants"]["real"]["train_images"]);
    const auto& strongest = down["strongest_baseline"].get<std::string>();
    CHECK((strongest == "real" || strongest == "real_sampler"));
    CHECK(down["smallest_classes"].size() == (metrics["classes"].size() > 2 ? 2U : 0U));
    // The real-only classifier also judged the synthetic images.
    REQUIRE(down["independent_conditional_accuracy"].is_object());
    CHECK(down["independent_conditional_accuracy"]["judges"] == 1);
    CHECK(down["independent_conditional_accuracy"]["accuracy"]["mean"].get<double>() >= 0.0);
    CHECK(down["independent_conditional_accuracy"]["accuracy"]["mean"].get<double>() <= 1.0);
    CHECK(metrics["tsne"]["real"].get<int>() + metrics["tsne"]["synthetic"].get<int>() <= 120);

    // The page: every link resolves inside the report folder, every figure is a readable PNG and on the page.
    const auto report = work / "evaluate" / "report";
    const auto html = read_bytes(report / "index.html");
    CHECK(html.find("not</b> Inception FID") != std::string::npos);
    CHECK(html.find("independent judges") != std::string::npos);
    CHECK(html.find("bar &amp; &lt;tag&gt;") != std::string::npos);
    CHECK(html.find("<tag>") == std::string::npos);
    const auto links = links_of(html);
    CHECK(links.size() >= 4);
    for (const auto& l : links) {
      CAPTURE(l);
      CHECK(l.find("://") == std::string::npos);
      CHECK(l.find("..") == std::string::npos);
      CHECK(fs::is_regular_file(report / l));
    }
    std::set<std::string> linked(links.begin(), links.end());
    REQUIRE(metrics["figures"].size() >= 5);
    for (const auto& f : metrics["figures"]) {
      const auto name = f.get<std::string>();
      CAPTURE(name);
      CHECK(linked.count(name) == 1);
      CHECK_FALSE(cv::imread((report / name).string()).empty());
    }
    for (const char* f :
         {"loss.png", "tsne_classes.png", "tsne_thumbnails.png", "samples_001.png", "real_vs_synthetic_002.png"}) {
      CAPTURE(f);
      CHECK(linked.count(f) == 1);
    }
    CHECK(json::parse(read_bytes(report / "metrics.json")) == metrics);

    // Rerunning the downstream part reuses the finished runs (same figures, nothing retrained).
    r = cmd(eval);
    REQUIRE(r.code == 0);
    const auto again = json::parse(read_bytes(work / "evaluate" / "metrics.json"));
    CHECK(again["downstream"]["variants"] == metrics["downstream"]["variants"]);
    CHECK(again["tsne"]["nearest_neighbour_class_agreement"] == metrics["tsne"]["nearest_neighbour_class_agreement"]);

    // emit carries the figures into the dataset card and the report folder into the output.
    r = cmd({"emit", "--only", "emit", "--output", out.string()});
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(json::parse(read_bytes(out / "dataset.json"))["evaluation"] == again);
    // The report sits next to the image folder, which holds only class folders (ImageFolder's classes).
    const auto beside = out.parent_path() / (out.filename().string() + "_report");
    CHECK(read_bytes(beside / "index.html") == read_bytes(report / "index.html"));
    CHECK(fs::is_regular_file(beside / "tsne_classes.png"));
    CHECK(json::parse(read_bytes(out / "dataset.json"))["report"] ==
          "../" + beside.filename().string() + "/index.html");
    int folders = 0;
    for (const auto& e : fs::directory_iterator(out)) folders += e.is_directory();
    CHECK(folders == 3);  // the three classes of this test
    // A rerun with --force replaces both; a foreign folder in the report's place is refused.
    r = cmd({"emit", "--only", "emit", "--force", "--output", out.string()});
    CHECK(r.code == 0);
    fs::remove_all(beside);
    fs::create_directories(beside);
    write_bytes(beside / "mine.txt", "user data");
    r = cmd({"emit", "--only", "emit", "--force", "--output", out.string()});
    CHECK(r.code == 73);
    CHECK(r.err.find(beside.string()) != std::string::npos);
    CHECK(read_bytes(beside / "mine.txt") == "user data");
  }

  TEST_CASE("evaluate without held-out images compares with the train split and leaves out what needs a test split") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work";
    write_dataset(input);
    const std::vector<std::string> common = test::stage_args(
        input, work, kRes,
        {"--threads", "1", "--classifier.min_steps", "0", "--classifier.epochs", "2", "--classifier.width", "8"});
    auto cmd = [&](std::vector<std::string> head) {
      head.insert(head.end(), common.begin(), common.end());
      return run_augment(head);
    };
    auto r = cmd({"classifier", "--quiet"});
    INFO(r.err);
    REQUIRE(r.code == 0);
    sample_noisy_copies(work);
    r = cmd({"evaluate", "--only", "evaluate", "--evaluate.tsne_points", "0", "--evaluate.grid", "2"});
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.err.find("compared with the real train split") != std::string::npos);
    const auto metrics = json::parse(read_bytes(work / "evaluate" / "metrics.json"));
    CHECK(metrics["reference_split"] == "train");
    CHECK(metrics["downstream"].is_null());
    CHECK(metrics["frechet_distance"]["train_vs_test"].is_null());
    CHECK(metrics["tsne"].is_null());
    CHECK(metrics["frechet_distance"]["synthetic_vs_test"]["overall"].is_number());
    const auto html = read_bytes(work / "evaluate" / "report" / "index.html");
    CHECK(html.find("no test split") != std::string::npos);
    for (const auto& l : links_of(html)) CHECK(fs::is_regular_file(work / "evaluate" / "report" / l));
  }

  TEST_CASE("the report page escapes text and shows only the figures it is given") {
    const json m = {{"classes", {"a<b", "c"}}, {"images", {{"synthetic", 3}}}, {"downstream", nullptr}};
    const auto html =
        evaluation_html(m, {{"Figures", "intro & more", {{"x.png", "X \"quoted\"", ""}}}, {"Empty", "", {}}});
    CHECK(html.find("a&lt;b") != std::string::npos);
    CHECK(html.find("intro &amp; more") != std::string::npos);
    CHECK(html.find("src=\"x.png\"") != std::string::npos);
    CHECK(html.find("X &quot;quoted&quot;") != std::string::npos);
    CHECK(html.find("<h2>Empty</h2>") == std::string::npos);
    CHECK(html.find("Not measured") != std::string::npos);
    std::set<std::string> links;
    for (const auto& l : links_of(html)) links.insert(l);
    CHECK(links == std::set<std::string>{"x.png", "metrics.json"});
  }
}

TEST_CASE("evaluate figures: the t-SNE thumbnail map has a legend and tells real from synthetic frames") {
  // Two far-apart points, one real and one synthetic of the same class, drawn as grey tiles.
  const std::vector<MapPoint> points{{0.0f, 0.0f, 0, false}, {1.0f, 1.0f, 0, true}};
  const std::vector<cv::Mat> tiles(2, cv::Mat(8, 8, CV_8UC3, cv::Scalar(128, 128, 128)));
  const int size = 400, thumb = 32;
  const auto map = thumbnail_map(points, tiles, {"cross & bar"}, size, thumb);
  REQUIRE(map.cols > size);  // the legend sits to the right of the map
  const cv::Mat legend = map(cv::Rect(size, 0, map.cols - size, map.rows));
  cv::Mat ink;
  cv::inRange(legend, cv::Scalar(0, 0, 0), cv::Scalar(250, 250, 250), ink);
  CHECK(cv::countNonZero(ink) > 200);  // the class swatch, its name, "real" and "synthetic"
  // The middle of a frame's top edge: the class colour for the real image, the tile for the synthetic one.
  const int lo = thumb / 2 + 2, hi = size - lo;  // where MapFrame puts the two points
  const auto top_middle = [&](int cx, int cy) { return map.at<cv::Vec3b>(cy - thumb / 2, cx); };
  CHECK(top_middle(lo, lo) != cv::Vec3b(128, 128, 128));
  CHECK(top_middle(hi, hi) == cv::Vec3b(128, 128, 128));
}
