// End to end: which stages a rerun does again (status, staleness, --from, --only), and a cache
// killed or interrupted midway that resumes from its finished parts.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "augment_test_paths.h"
#include "fixtures.h"
#include "manifests/image_cache.h"
#include "manifests/image_record.h"
#include "pipeline/base/csv.h"
#include "pipeline/base/hash.h"

using namespace augment;
using namespace augment::test;

TEST_SUITE("ingest cli") {
  TEST_CASE("status - staleness - --from and --only") {
    TempDir dir;
    const auto input = dir / "data";
    for (int i = 0; i < 5; ++i) {
      write_image(input / "a" / (std::to_string(i) + ".png"), 16, 16, 3, i);
      write_image(input / "b" / (std::to_string(i) + ".png"), 16, 16, 3, 10 + i);
    }
    const auto work = (dir / "work").string();
    const std::vector<std::string> base = {"--input", input.string(), "--work", work, "--resolution", "8"};
    auto with = [&](std::vector<std::string> head, std::vector<std::string> tail = {}) {
      head.insert(head.end(), base.begin(), base.end());
      head.insert(head.end(), tail.begin(), tail.end());
      return head;
    };
    auto r = run_augment(with({"status"}));
    CHECK(r.code == 66);  // nothing ran yet
    const auto events = dir / "events.jsonl";
    r = run_augment(with({"cache"}, {"--log-json", events.string()}));
    REQUIRE(r.code == 0);
    // Logs of batch jobs (stderr not a terminal) get whole lines, and --log-json one object per event.
    CHECK(r.err.find('\r') == std::string::npos);
    CHECK(r.err.find("scan: 10/10 (100%)") != std::string::npos);
    std::ifstream ev(events);
    std::string line;
    std::set<std::string> kinds;
    while (std::getline(ev, line)) kinds.insert(nlohmann::json::parse(line).at("event").get<std::string>());
    CHECK(kinds.count("stage_start") == 1);
    CHECK(kinds.count("stage_end") == 1);
    CHECK(kinds.count("progress") == 1);
    r = run_augment(with({"status"}));
    CHECK(r.out.find("scan         done") != std::string::npos);
    CHECK(r.out.find("cache        done") != std::string::npos);

    // Everything is up to date: nothing reruns.
    r = run_augment(with({"cache"}));
    CHECK(r.err.find("scan: up to date") != std::string::npos);
    CHECK(r.err.find("cache: up to date") != std::string::npos);

    // A record from an older augment that lacked an option: at its default it is no change; set
    // to something else it is.
    {
      const auto rec_path = fs::path(work) / "records" / "cache.json";
      auto rec = nlohmann::json::parse(read_bytes(rec_path));
      REQUIRE(rec["options"].contains("cache.fit"));
      rec["options"].erase("cache.fit");
      write_bytes(rec_path, rec.dump(2));
    }
    r = run_augment(with({"status"}));
    CHECK(r.out.find("cache        done") != std::string::npos);
    r = run_augment(with({"status"}, {"--cache.fit", "pad"}));
    CHECK(r.out.find("cache        stale") != std::string::npos);
    CHECK(r.out.find("cache.fit") != std::string::npos);

    // A cache option change makes only cache stale.
    r = run_augment(with({"status"}, {"--channels", "1"}));
    CHECK(r.out.find("scan         done") != std::string::npos);
    CHECK(r.out.find("cache        stale") != std::string::npos);
    CHECK(r.out.find("cache.channels") != std::string::npos);
    // A new image makes scan stale, and the change flows down.
    write_image(input / "b" / "new.png", 16, 16, 3, 99);
    r = run_augment(with({"status"}));
    CHECK(r.out.find("scan         stale") != std::string::npos);
    r = run_augment(with({"cache"}));
    CHECK(r.code == 0);
    CHECK(r.err.find("== subsample done") != std::string::npos);
    CHECK(r.err.find("== cache done") != std::string::npos);

    r = run_augment(with({"cache"}, {"--from", "subsample"}));
    CHECK(r.err.find("scan: up to date") != std::string::npos);
    CHECK(r.err.find("== subsample done") != std::string::npos);
    CHECK(r.err.find("== cache done") != std::string::npos);
    r = run_augment(with({"cache"}, {"--only", "cache"}));
    CHECK(r.err.find("scan") == std::string::npos);
    CHECK(r.err.find("== cache done") != std::string::npos);
    // A modified output is noticed.
    write_bytes(fs::path(work) / "subsample" / "classes.json", "{}");
    r = run_augment(with({"status"}));
    CHECK(r.out.find("subsample    stale") != std::string::npos);
  }

  TEST_CASE("cache killed with SIGKILL or stopped with SIGINT resumes from finished parts") {
    TempDir dir;
    const auto input = dir / "data";
    // Large smooth PNGs: small files, slow enough to decode that the kill lands mid-way.
    for (int c = 0; c < 2; ++c) {
      for (int i = 0; i < 60; ++i) {
        cv::Mat img(900, 900, CV_8UC3);
        for (int y = 0; y < img.rows; ++y) img.row(y).setTo(cv::Scalar((y + i * 7) % 256, (c * 90 + i) % 256, y % 200));
        const auto p = input / ("class " + std::to_string(c)) / (std::to_string(i) + ".png");
        fs::create_directories(p.parent_path());
        cv::imwrite(p.string(), img);
      }
    }
    const auto work = dir / "work";
    const std::vector<std::string> args = {"cache",
                                           "--input",
                                           input.string(),
                                           "--work",
                                           work.string(),
                                           "--quiet",
                                           "--resolution",
                                           "32",
                                           "--cache.shard_size",
                                           "8",
                                           "--threads",
                                           "1",
                                           "--scan.prefetch_tiles=false"};
    // Without prefetched tiles, cache decodes every image itself, in resumable parts.
    REQUIRE(run_augment({"subsample", "--input", input.string(), "--work", work.string(), "--quiet", "--resolution",
                         "32", "--scan.prefetch_tiles=false"})
                .code == 0);

    auto start_and_signal = [&](int sig) {
      const pid_t pid = spawn_augment(args, "", "/dev/null");
      // Wait until this run has finished a part of its own, then signal.
      auto parts = [&] {
        std::error_code ec;
        int n = 0;
        for (auto it = fs::directory_iterator(work / "cache" / "parts", ec); !ec && it != fs::directory_iterator();
             it.increment(ec)) {
          n += it->path().extension() == ".h5";
        }
        return n;
      };
      const int before = parts();
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (parts() <= before && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      ::kill(pid, sig);
      int status = 0;
      ::waitpid(pid, &status, 0);
      return status;
    };

    int status = start_and_signal(SIGKILL);
    CHECK(WIFSIGNALED(status));
    CHECK_FALSE(fs::exists(work / "cache" / "train.h5"));
    CHECK_FALSE(fs::exists(work / "records" / "cache.json"));

    status = start_and_signal(SIGINT);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 130);
    CHECK_FALSE(fs::exists(work / "cache" / "train.h5"));

    auto r = run_augment({"cache", "--input", input.string(), "--work", work.string(), "--resolution", "32",
                          "--cache.shard_size", "8", "--scan.prefetch_tiles=false"});
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.err.find("reused") != std::string::npos);
    // No temp files remain anywhere in the work dir.
    for (const auto& e : fs::recursive_directory_iterator(work))
      CHECK(e.path().filename().string().find("augment-tmp") == std::string::npos);

    // The resumed cache equals an uninterrupted one made from the tiles prefetched by scan.
    const auto fresh = dir / "fresh";
    REQUIRE(run_augment({"cache", "--input", input.string(), "--work", fresh.string(), "--resolution", "32", "--quiet"})
                .code == 0);
    for (const char* split : {"train", "val", "test"}) {
      CacheReader a(work / "cache" / (std::string(split) + ".h5")), b(fresh / "cache" / (std::string(split) + ".h5"));
      REQUIRE(a.size() == b.size());
      std::vector<std::uint8_t> pa(a.image_bytes() * a.size()), pb(pa.size());
      std::vector<std::int64_t> la(a.size()), lb(b.size());
      a.read(0, a.size(), pa.data(), la.data(), nullptr);
      b.read(0, b.size(), pb.data(), lb.data(), nullptr);
      CHECK(pa == pb);
      CHECK(la == lb);
    }
  }
}
