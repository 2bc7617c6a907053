// End to end: the `augment` binary on generated image folders, as a user would run it.
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

namespace {

const std::vector<std::string> kOddClasses = {"with space", "R&D", "comma, class", "quote \"q\"", "ñandú"};

// Every file's hash, to prove the input was not touched.
std::map<std::string, std::string> tree_hashes(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file() && !e.is_symlink()) out[e.path().string()] = hash_file(e.path());
  }
  return out;
}

// A folder with awkward class names, every image kind, and broken files.
void make_messy_dataset(const fs::path& root) {
  int seed = 0;
  for (const auto& cls : kOddClasses) {
    for (int i = 0; i < 6; ++i) write_image(root / cls / ("rgb" + std::to_string(i) + ".jpg"), 40 + i, 30, 3, ++seed);
  }
  write_image(root / "with space" / "gray.png", 20, 20, 1, ++seed);
  write_image(root / "with space" / "sub" / "deep" / "rgba.PNG", 24, 24, 4, ++seed);
  write_palette_png(root / "R&D" / "palette.png", 16, 16);
  write_image(root / "R&D" / "sixteen.png", 18, 18, 3, ++seed, true);
  write_bytes(root / "ñandú" / "empty.jpg", "");
  const auto jpg = read_bytes(root / "ñandú" / "rgb0.jpg");
  write_bytes(root / "ñandú" / "truncated.jpg", jpg.substr(0, jpg.size() / 2));
  write_bytes(root / "quote \"q\"" / "notes.png", "this is not an image");
  write_huge_header_png(root / "R&D" / "bomb.png", 40000, 40000);
  write_bytes(root / "R&D" / "readme.txt", "ignored: not an image extension");
  write_bytes(root / "R&D" / ".DS_Store", "junk");
  // The same bytes in two classes.
  fs::copy_file(root / "R&D" / "rgb0.jpg", root / "comma, class" / "copy_of_rd.jpg");
  // A file name that is not UTF-8 cannot go into JSON manifests: rejected with the fix.
  write_image(root / "R&D" / std::string("latin1-\xe9t\xe9.png"), 10, 10, 3, ++seed);
  // A symlink loop must not hang the walk.
  fs::create_directory_symlink("..", root / "with space" / "loop");
}

int count_lines(const fs::path& p) {
  std::ifstream in(p);
  int n = 0;
  std::string line;
  while (std::getline(in, line)) n += !line.empty();
  return n;
}

}  // namespace

TEST_SUITE("ingest cli") {
  TEST_CASE("a messy image folder is scanned - split and cached - rejects are listed - the input is untouched") {
    TempDir dir;
    const auto input = dir / "data";
    make_messy_dataset(input);
    const auto before = tree_hashes(input);
    const auto work = dir / "work";
    auto r =
        run_augment({"cache", "--input", input.string(), "--work", work.string(), "--resolution", "16", "--quiet"});
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(tree_hashes(input) == before);

    // Rejects: empty, truncated, not an image, too many pixels, bad name; each with its reason.
    std::ifstream rej(work / "scan" / "rejects.csv");
    std::map<std::string, std::string> reasons;
    csv::read_row(rej);
    while (auto row = csv::read_row(rej)) reasons[fs::path((*row)[0]).filename().string()] = (*row)[2];
    CHECK(reasons.size() == 5);
    CHECK(reasons[std::string("latin1-\xe9t\xe9.png")].find("rename") != std::string::npos);
    CHECK(reasons["empty.jpg"].find("0 bytes") != std::string::npos);
    CHECK(reasons["truncated.jpg"].find("truncated") != std::string::npos);
    CHECK(reasons["notes.png"].find("not an image") != std::string::npos);
    CHECK(reasons["bomb.png"].find("too many pixels") != std::string::npos);

    // Class names survive JSON, CSV and HDF5 exactly; classes are sorted by name.
    const auto classes = read_class_list(work / "subsample" / "classes.json");
    auto sorted = kOddClasses;
    std::sort(sorted.begin(), sorted.end());
    CHECK(classes.names == sorted);
    const auto rows = read_records_jsonl(work / "subsample" / "manifest.jsonl");
    CHECK(rows.size() == 5 * 6 + 5);  // 6 jpgs per class + gray, rgba, palette, 16-bit, copy
    std::ifstream man(work / "subsample" / "manifest.csv");
    csv::read_row(man);
    std::set<std::string> csv_classes;
    while (auto row = csv::read_row(man)) csv_classes.insert((*row)[1]);
    CHECK(csv_classes == std::set<std::string>(sorted.begin(), sorted.end()));
    // The duplicate across classes is reported.
    CHECK(count_lines(work / "scan" / "duplicates.csv") == 3);

    std::int64_t cached = 0;
    for (const char* split : {"train", "val", "test"}) {
      CacheReader reader(work / "cache" / (std::string(split) + ".h5"));
      CHECK(reader.info().class_names == sorted);
      CHECK(reader.info().resolution == 16);
      CHECK(reader.info().channels == 3);
      cached += reader.size();
    }
    CHECK(cached == static_cast<std::int64_t>(rows.size()));

    // Downstream tools (h5py) read the cache: shapes, dtypes and UTF-8 class names.
    const auto check_py = dir / "check.py";
    write_bytes(check_py,
                "import h5py, sys, json\n"
                "f = h5py.File(sys.argv[1], 'r')\n"
                "names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs['class_names']]\n"
                "print(json.dumps({'shape': list(f['images'].shape), 'dtype': str(f['images'].dtype), 'names': names,\n"
                "                  'labels': int(f['labels'].shape[0])}))\n");
    auto py = run_shell(python() + " " + check_py.string() + " " + (work / "cache" / "train.h5").string());
    INFO(py.out);
    REQUIRE(py.code == 0);
    const auto j = nlohmann::json::parse(py.out);
    CHECK(j["shape"][1] == 16);
    CHECK(j["shape"][3] == 3);
    CHECK(j["dtype"] == "uint8");
    CHECK(j["names"].get<std::vector<std::string>>() == sorted);

    // --strict turns the rejects into an error naming the reject list.
    r = run_augment({"scan", "--input", input.string(), "--work", (dir / "work2").string(), "--strict", "--quiet"});
    CHECK(r.code == 65);
    CHECK(r.err.find("rejects.csv") != std::string::npos);
  }

  TEST_CASE("bad input and bad places get clear errors and sysexits codes") {
    TempDir dir;
    const auto input = dir / "data";
    for (int i = 0; i < 3; ++i) {
      write_image(input / "cat" / (std::to_string(i) + ".png"), 12, 12, 3, i);
      write_image(input / "dog" / (std::to_string(i) + ".png"), 12, 12, 3, 10 + i);
    }
    const auto work = (dir / "work").string();
    auto r = run_augment({"scan", "--input", (dir / "missing").string(), "--work", work});
    CHECK(r.code == 66);
    CHECK(r.err.find("does not exist") != std::string::npos);
    fs::create_directories(dir / "emptyroot");
    CHECK(run_augment({"scan", "--input", (dir / "emptyroot").string(), "--work", work}).code == 66);
    // No --input (and no recorded run in the work dir to continue).
    r = run_augment({"scan", "--work", (dir / "fresh").string()});
    CHECK(r.code == 64);
    CHECK(r.err.find("no input") != std::string::npos);

    r = run_augment({"scan", "--input", input.string(), "--work", (input / "cat" / "w").string()});
    CHECK(r.code == 73);
    CHECK(r.err.find("never writes into your data") != std::string::npos);
    CHECK_FALSE(fs::exists(input / "cat" / "w"));
    CHECK(run_augment({"scan", "--input", input.string(), "--work", input.string()}).code == 73);
    CHECK(run_augment({"scan", "--input", input.string(), "--work", work, "--output", (input / "out").string()}).code ==
          73);

    r = run_augment({"scan", "--input", input.string(), "--work", work, "--resolutoin", "3"});
    CHECK(r.code == 64);
    CHECK(r.err.find("did you mean") != std::string::npos);
    write_bytes(dir / "job.ini", "[scan]\nstrictly = true\n");
    r = run_augment({"scan", "--input", input.string(), "--work", work, "--config", (dir / "job.ini").string()});
    CHECK(r.code == 78);
    CHECK(r.err.find("job.ini:2") != std::string::npos);
    CHECK(run_augment({"scan", "--input", input.string(), "--work", work, "--seed", "-1"}).code == 78);

    // An empty class folder fails unless --allow-empty.
    fs::create_directories(input / "empty class");
    r = run_augment({"scan", "--input", input.string(), "--work", work, "--quiet"});
    CHECK(r.code == 65);
    CHECK(r.err.find("--allow-empty") != std::string::npos);
    r = run_augment({"scan", "--input", input.string(), "--work", work, "--allow-empty", "--quiet"});
    CHECK(r.code == 0);
    // A selected class that does not exist.
    r = run_augment(
        {"subsample", "--input", input.string(), "--work", work, "--allow-empty", "--classes", "cat,cow", "--quiet"});
    CHECK(r.code == 65);
    CHECK(r.err.find("'cow'") != std::string::npos);

    // A plan no disk or memory holds is a configuration error when the option is read.
    for (const char* policy : {"synthetic=99999999999999", "per_class=99999999999999", "ratio=1e9"}) {
      CAPTURE(policy);
      r = run_augment({"sample", "--input", input.string(), "--work", work, "--sample.policy", policy});
      CHECK(r.code == 78);
      CHECK(r.err.find("sample.policy") != std::string::npos);
      CHECK(r.err.find("internal error") == std::string::npos);
    }

    // A control character in a class name (a folder, or NAME=) is refused with the name shown.
    fs::remove_all(input / "empty class");
    write_image(input / "line\nbreak" / "0.png", 12, 12, 3, 7);
    r = run_augment({"scan", "--input", input.string(), "--work", work, "--quiet"});
    CHECK(r.code == 65);
    CHECK(r.err.find("line\\x0abreak") != std::string::npos);
    CHECK(r.err.find("control character") != std::string::npos);
    fs::remove_all(input / "line\nbreak");
    r = run_augment({"scan", "--input", "tab\tcat=" + (input / "cat").string(), "--work", work, "--quiet"});
    CHECK(r.code == 64);
    CHECK(r.err.find("tab\\x09cat") != std::string::npos);
  }

  TEST_CASE("a later command with --work alone continues the recorded run - the options given still win") {
    TempDir dir;
    const auto input = dir / "data";
    for (int i = 0; i < 5; ++i) {
      write_image(input / "a b" / (std::to_string(i) + ".png"), 16, 16, 3, i);
      write_image(input / "c&d" / (std::to_string(i) + ".png"), 16, 16, 3, 10 + i);
    }
    const auto work = (dir / "work").string();
    auto r = run_augment(
        {"cache", "--input", input.string(), "--work", work, "--resolution", "8", "--channels", "1", "--quiet"});
    REQUIRE(r.code == 0);
    r = run_augment({"status", "--work", work});
    INFO(r.err);
    CHECK(r.code == 0);
    CHECK(r.err.find("using the inputs and options recorded in") != std::string::npos);
    CHECK(r.out.find("scan         done") != std::string::npos);
    CHECK(r.out.find("cache        done") != std::string::npos);
    r = run_augment({"cache", "--work", work});
    CHECK(r.code == 0);
    CHECK(r.err.find("cache: up to date") != std::string::npos);
    // An option given wins over the recorded one.
    r = run_augment({"status", "--work", work, "--channels", "3"});
    CHECK(r.out.find("cache        stale") != std::string::npos);
    CHECK(r.out.find("cache.channels") != std::string::npos);
    // With --input the command line is the whole configuration, as before; an option it leaves
    // out keeps what the finished stage ran with rather than retraining on a default.
    r = run_augment({"status", "--work", work, "--input", input.string(), "--resolution", "8"});
    CHECK(r.err.find("recorded in") == std::string::npos);
    CHECK(r.out.find("cache        done") != std::string::npos);
    CHECK(r.out.find("keeps cache.channels = 1 (default now 3)") != std::string::npos);
  }

  TEST_CASE("cache --force on unchanged data writes the same bytes and leaves later stages done") {
    TempDir dir;
    const auto input = dir / "data";
    for (int i = 0; i < 6; ++i) {
      write_image(input / "a" / (std::to_string(i) + ".png"), 16, 16, 3, i);
      write_image(input / "b" / (std::to_string(i) + ".png"), 16, 16, 3, 10 + i);
    }
    const auto work = dir / "work";
    const std::vector<std::string> base = {"--input",
                                           input.string(),
                                           "--work",
                                           work.string(),
                                           "--resolution",
                                           "8",
                                           "--threads",
                                           "1",
                                           "--precision",
                                           "fp32",
                                           "--classifier.min_steps",
                                           "0",
                                           "--classifier.epochs",
                                           "1",
                                           "--classifier.width",
                                           "4",
                                           "--subsample.test_fraction",
                                           "0.25",
                                           "--subsample.val_fraction",
                                           "0.2",
                                           "--quiet"};
    auto with = [&](std::vector<std::string> head) {
      head.insert(head.end(), base.begin(), base.end());
      return head;
    };
    REQUIRE(run_augment(with({"classifier"})).code == 0);
    std::map<std::string, std::string> before;
    for (const char* f : {"scan/tiles.h5", "cache/train.h5", "cache/val.h5", "cache/test.h5"})
      before[f] = read_bytes(work / f);
    const auto model = read_bytes(work / "classifier" / "model.pt");
    REQUIRE(run_augment(with({"cache", "--from", "scan"})).code == 0);
    for (const auto& [f, bytes] : before) {
      CAPTURE(f);
      CHECK(read_bytes(work / f) == bytes);
    }
    auto r = run_augment(with({"status"}));
    CHECK(r.out.find("classifier   done") != std::string::npos);
    // The classifier retrained on the same data: other archive bytes, the same weights, and the
    // record (what later stages compare) says so.
    const auto digest = nlohmann::json::parse(read_bytes(work / "records" / "classifier.json"))["outputs"][0]["hash"];
    REQUIRE(run_augment(with({"classifier", "--force"})).code == 0);
    CHECK(nlohmann::json::parse(read_bytes(work / "records" / "classifier.json"))["outputs"][0]["hash"] == digest);
    MESSAGE("model.pt bytes ", (read_bytes(work / "classifier" / "model.pt") == model ? "equal" : "differ"),
            " after retraining");
  }

  TEST_CASE("NAME=DIR inputs and a class map make classes from whole folders and files") {
    TempDir dir;
    for (int i = 0; i < 4; ++i) {
      write_image(dir / "dogs" / "breed a" / (std::to_string(i) + ".jpg"), 20, 20, 3, i);
      write_image(dir / "cars" / (std::to_string(i) + ".png"), 20, 20, 3, 20 + i);
    }
    auto r = run_augment({"scan", "--input", "dog=" + (dir / "dogs").string(), "--input",
                          "car=" + (dir / "cars").string(), "--work", (dir / "w1").string(), "--quiet"});
    REQUIRE(r.code == 0);
    auto classes = read_class_list(dir / "w1" / "scan" / "classes.json");
    CHECK(classes.names == std::vector<std::string>{"car", "dog"});
    CHECK(classes.counts == std::vector<std::int64_t>{4, 4});

    write_bytes(dir / "map.csv", "source,class\ncars,\"vehicle, land\"\ncars/0.png,odd one\ndogs/breed a,dog\n");
    r = run_augment({"scan", "--input", dir.path().string(), "--class-map", (dir / "map.csv").string(), "--work",
                     (dir.path().parent_path() / (dir.path().filename().string() + "-w2")).string(), "--quiet"});
    const auto w2 = dir.path().parent_path() / (dir.path().filename().string() + "-w2");
    INFO(r.err);
    REQUIRE(r.code == 0);
    classes = read_class_list(w2 / "scan" / "classes.json");
    CHECK(classes.names == std::vector<std::string>{"dog", "odd one", "vehicle, land"});
    CHECK(classes.counts == std::vector<std::int64_t>{4, 1, 3});
    fs::remove_all(w2);
  }

  TEST_CASE("help - version and unknown commands") {
    auto r = run_augment({"--version"});
    CHECK(r.code == 0);
    CHECK(r.out.find("augment ") == 0);
    r = run_augment({"help"});
    CHECK(r.out.find("exit codes") != std::string::npos);
    r = run_augment({"help", "cache"});
    CHECK(r.out.find("--cache.resolution") != std::string::npos);
    CHECK(run_augment({"frobnicate"}).code == 64);
    CHECK(run_augment({}).code == 64);
  }
}
