// End to end: the real binary scans, splits and caches a tiny dataset with awkward class names; a
// fake model fills the sample store through its API; then `augment emit` and `augment export`.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "augment_test_paths.h"
#include "fixtures.h"
#include "manifests/csv.h"
#include "manifests/image_cache.h"
#include "manifests/image_record.h"
#include "manifests/sample_store.h"
#include "pipeline/fs_util.h"
#include "pipeline/report.h"
#include "pipeline/sha256.h"
#include "stages/emit_stage.h"
#include "stages/sample_plan.h"

using namespace augment;
using namespace augment::test;
using nlohmann::json;

namespace {

const std::vector<std::pair<std::string, int>> kClasses = {
    {"with space", 6}, {"R&D", 3}, {"comma, class", 8}, {"quote \"q\"", 4}, {"ñandú", 5}};
constexpr int kRes = 8;

GeneratedImage fake_image(std::uint64_t seed) {
  GeneratedImage g;
  g.pixels.resize(kRes * kRes * 3);
  std::uint64_t x = seed;
  for (auto& p : g.pixels) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    p = static_cast<std::uint8_t>(x >> 56);
  }
  g.confidence = 0.5;
  return g;
}

// scan + subsample + cache by the binary, then two shards of fake samples through the store API.
SamplePlan prepare(const fs::path& input, const fs::path& work) {
  int seed = 0;
  for (const auto& [name, n] : kClasses) {
    for (int i = 0; i < n; ++i) write_image(input / name / ("img" + std::to_string(i) + ".png"), 12, 12, 3, ++seed);
  }
  // Two source folders with the same file name in one class: the emitted names must not clash.
  write_image(input / "R&D" / "sub" / "img0.png", 12, 12, 3, ++seed);
  auto r = run_augment({"cache", "--input", input.string(), "--work", work.string(), "--resolution", std::to_string(kRes), "--quiet",
                        "--subsample.val_fraction", "0", "--subsample.test_fraction", "0"});
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
    run_sampling(job, plan, [](const std::vector<SampleRequest>& reqs) {
      std::vector<GeneratedImage> out;
      for (const auto& q : reqs) out.push_back(fake_image(q.seed));
      return out;
    }, quiet);
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

std::string python() { return fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3"; }

// Runs `run` under a file size limit of `bytes`, which stands in for a full disk: a child's write
// past it fails (EFBIG) instead of killing the process (SIGXFSZ ignored, inherited).
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

}  // namespace

TEST_SUITE("emit and export") {
  TEST_CASE("emit writes the image folder - manifests and card - export writes shards h5py reads") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work", out = dir / "out";
    const auto plan = prepare(input, work);
    const std::vector<std::string> common = {"--input", input.string(), "--work", work.string(), "--resolution", std::to_string(kRes),
                                             "--subsample.val_fraction", "0", "--subsample.test_fraction", "0", "--quiet"};
    // The samples are fake (no trained model): run each stage alone instead of its prerequisites.
    auto cmd = [&](std::vector<std::string> head, std::vector<std::string> tail = {}) {
      const std::string stage = head.front();
      head.insert(head.end(), {"--only", stage});
      head.insert(head.end(), common.begin(), common.end());
      head.insert(head.end(), tail.begin(), tail.end());
      return run_augment(head);
    };

    auto r = cmd({"emit", "--output", out.string()});
    INFO(r.err);
    CHECK(r.code == 66);
    CHECK(r.err.find("run `augment sample` first") != std::string::npos);
    CHECK_FALSE(fs::exists(out));

    sample_fake(work, plan);
    // A missing shard is named.
    fs::rename(work / "sample" / "journal-1-of-2.jsonl", dir / "j1");
    r = cmd({"emit", "--output", out.string()});
    CHECK(r.code == 66);
    CHECK(r.err.find("shard 1 of 2 is missing") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
    fs::rename(dir / "j1", work / "sample" / "journal-1-of-2.jsonl");

    // A foreign, non-empty folder is refused and left alone.
    write_bytes(dir / "foreign" / "keep.txt", "mine");
    r = cmd({"emit", "--output", (dir / "foreign").string()});
    CHECK(r.code == 73);
    CHECK(r.err.find("not written by augment") != std::string::npos);
    CHECK(read_bytes(dir / "foreign" / "keep.txt") == "mine");

    r = cmd({"emit", "--output", out.string()});
    INFO(r.err);
    REQUIRE(r.code == 0);
    // Nothing half-made is left next to the output.
    for (const auto& e : fs::directory_iterator(dir.path())) CHECK(e.path().filename().string().find("augment-tmp") == std::string::npos);

    const std::int64_t largest = 8;
    const auto rows = read_csv(out / "manifest.csv");
    CHECK(rows.size() == kClasses.size() * largest);
    std::map<std::string, int> real_per_class, syn_per_class;
    for (const auto& row : rows) {
      CHECK(fs::is_regular_file(out / row.at("file_name")));
      CHECK(row.at("split") == "train");
      const bool syn = row.at("source") == "synthetic";
      (syn ? syn_per_class : real_per_class)[row.at("class")]++;
      CHECK(row.at("file_name").find(syn ? "/synthetic_" : "/real_") != std::string::npos);
      CHECK(row.at("weight") == "1.0");
      if (syn) {
        CHECK(row.at("sampler") == "fake");
        CHECK(row.at("checkpoint") == "ckpt-abc");
        CHECK(row.at("confidence") == "0.5");
        CHECK(row.at("origin").empty());
      } else {
        CHECK(fs::exists(row.at("origin")));
        CHECK(row.at("seed").empty());
      }
    }
    for (const auto& cp : plan.classes) {
      CHECK(real_per_class[cp.name] == cp.real_train);
      CHECK(syn_per_class[cp.name] == cp.synthetic);
      CHECK(real_per_class[cp.name] + syn_per_class[cp.name] == largest);
      CHECK(fs::is_directory(out / cp.name));  // spaces, quotes, & and non-ASCII kept in folder names
    }
    CHECK(fs::exists(out / "R&D" / "real_img0.png"));
    CHECK(fs::exists(out / "R&D" / "real_img0_2.png"));
    // Real images are hard links of the input (same file system here).
    struct stat st;
    REQUIRE(::stat((out / "ñandú" / "real_img0.png").c_str(), &st) == 0);
    CHECK(st.st_nlink == 2);
    // Synthetic PNGs are the store's bytes.
    CHECK(read_bytes(out / "R&D" / "synthetic_000001.png") == read_bytes(work / "sample" / sample_image_relpath(0, 1)));

    // metadata.jsonl: one object per image with file_name relative to the folder.
    std::ifstream meta(out / "metadata.jsonl");
    std::string line;
    // Real and synthetic rows are mixed from the start, so readers that type columns from the
    // first block (Hugging Face datasets) see both kinds: the second row is synthetic, and every
    // tenth of the file holds some of each.
    std::size_t n_meta = 0;
    std::vector<std::string> sources;
    while (std::getline(meta, line)) {
      const auto j = json::parse(line);
      CHECK(fs::is_regular_file(out / j["file_name"].get<std::string>()));
      CHECK(j["label"].is_number_integer());
      sources.push_back(j["source"].get<std::string>());
      ++n_meta;
    }
    CHECK(n_meta == rows.size());
    REQUIRE(sources.size() >= 2);
    CHECK(sources[0] == "real");
    CHECK(sources[1] == "synthetic");
    const std::size_t tenth = sources.size() / 10;
    for (std::size_t start = 0; tenth >= 4 && start + tenth <= sources.size(); start += tenth) {
      const auto synthetic = std::count(sources.begin() + start, sources.begin() + start + tenth, "synthetic");
      CHECK(synthetic > 0);
      CHECK(synthetic < static_cast<long>(tenth));
    }

    const auto card = json::parse(read_bytes(out / "dataset.json"));
    CHECK(card["policy"] == "balance=max");
    CHECK(card["generation"]["checkpoint"] == "ckpt-abc");
    CHECK(card["generation"]["shards"] == 2);
    CHECK(card["class_names"].size() == kClasses.size());
    for (const auto& c : card["classes"]) CHECK(c["after"]["total"] == largest);
    CHECK(card["versions"]["augment"].is_string());
    CHECK(card["evaluation"].is_null());
    CHECK(fs::exists(out / ".augment-dataset"));

    // croissant.json: every image and manifest with its SHA-256; the record set reads the CSV's columns.
    const auto cr = json::parse(read_bytes(out / "croissant.json"));
    CHECK(cr["conformsTo"] == "http://mlcommons.org/croissant/1.0");
    CHECK(cr["@type"] == "sc:Dataset");
    std::map<std::string, json> listed;
    for (const auto& f : cr["distribution"]) listed[f["contentUrl"].get<std::string>()] = f;
    CHECK(listed.size() == rows.size() + 3);
    for (const auto& row : rows) {
      const auto& f = listed[row.at("file_name")];
      REQUIRE(f.is_object());
      CHECK(f["sha256"] == sha256_file(out / row.at("file_name")));
      CHECK(f["encodingFormat"] == "image/png");
      CHECK(f["@id"].get<std::string>().find(' ') == std::string::npos);  // mlcroissant refuses ids with spaces
    }
    CHECK(listed["manifest.csv"]["sha256"] == sha256_file(out / "manifest.csv"));
    CHECK(listed["dataset.json"]["sha256"] == sha256_file(out / "dataset.json"));
    const auto& fields = cr["recordSet"][0]["field"];
    REQUIRE(fields.size() == rows.front().size());
    for (const auto& field : fields) {
      CHECK(rows.front().count(field["name"].get<std::string>()) == 1);
      CHECK(field["source"]["fileObject"]["@id"] == "manifest.csv");
    }
    CHECK(card["files"]["croissant"] == "croissant.json");

    // Ours, but replacing it needs --force.
    r = cmd({"emit", "--output", out.string(), "--emit.synthetic_weight", "0.25"});
    CHECK(r.code == 73);
    CHECK(r.err.find("--force") != std::string::npos);
    r = cmd({"emit", "--output", out.string(), "--emit.synthetic_weight", "0.25", "--force"});
    REQUIRE(r.code == 0);
    for (const auto& row : read_csv(out / "manifest.csv")) CHECK(row.at("weight") == (row.at("source") == "synthetic" ? "0.25" : "1.0"));

    // Export: 40 images in shards of 7.
    const std::vector<std::string> ex = {"--output", out.string(), "--emit.synthetic_weight", "0.25", "--export.shard_size", "7"};
    r = cmd({"export"}, ex);
    INFO(r.err);
    REQUIRE(r.code == 0);
    // Next to the image folder (inside, ImageFolder would take it for a class).
    const auto hdf5_dir = out.parent_path() / (out.filename().string() + "_hdf5");
    CHECK_FALSE(fs::exists(out / "hdf5"));
    const auto index = json::parse(read_bytes(hdf5_dir / "index.json"));
    REQUIRE(index["shards"].size() == 6);
    CHECK(index["total"] == 40);
    CHECK(index["shards"][0]["file"] == "train-00000-of-00006.h5");
    for (const auto& s : index["shards"]) CHECK(s["sha256"] == sha256_file(hdf5_dir / s["file"].get<std::string>()));

    // h5py reads every shard (checking the fletcher32 checksums); compare with the manifest.
    write_bytes(dir / "check.py",
                "import h5py, sys, json\n"
                "out = {'rows': []}\n"
                "for path in sys.argv[1:]:\n"
                "    f = h5py.File(path, 'r')\n"
                "    names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs['class_names']]\n"
                "    out['names'] = names\n"
                "    out['attrs'] = [int(f.attrs['height']), int(f.attrs['width']), int(f.attrs['channels']), int(f.attrs['format_version'])]\n"
                "    im = f['images']\n"
                "    out.setdefault('shapes', []).append(list(im.shape))\n"
                "    out['dtype'] = str(im.dtype)\n"
                "    out.setdefault('filters', []).append([im.compression, bool(im.shuffle), bool(im.fletcher32), list(im.chunks)])\n"
                "    files = [s.decode() if isinstance(s, bytes) else s for s in f['files'][:]]\n"
                "    for i in range(im.shape[0]):\n"
                "        out['rows'].append([files[i], int(f['labels'][i]), int(f['is_synthetic'][i]), int(im[i].astype('int64').sum())])\n"
                "print(json.dumps(out))\n");
    std::string args;
    for (const auto& s : index["shards"]) args += " '" + (hdf5_dir / s["file"].get<std::string>()).string() + "'";
    auto py = run_shell(python() + " " + (dir / "check.py").string() + args);
    INFO(py.out);
    REQUIRE(py.code == 0);
    const auto j = json::parse(py.out);
    std::vector<std::string> names;
    for (const auto& c : plan.classes) names.push_back(c.name);
    CHECK(j["names"].get<std::vector<std::string>>() == names);
    CHECK(j["attrs"] == json::array({kRes, kRes, 3, 1}));
    CHECK(j["dtype"] == "uint8");
    CHECK(j["filters"][0][0] == "gzip");
    CHECK(j["filters"][0][1] == true);
    CHECK(j["filters"][0][2] == true);
    CHECK(j["filters"][0][3] == json::array({7, kRes, kRes, 3}));  // 10 KiB worth of 192-byte images, capped by the shard
    CHECK(j["shapes"][5] == json::array({5, kRes, kRes, 3}));
    // Expected pixel sums: synthetic from the emitted PNGs, real from the cache.
    std::map<std::string, std::int64_t> origin_sum;
    {
      CacheReader cache(work / "cache" / "train.h5");
      const auto manifest = read_records_jsonl(work / "subsample" / "manifest.jsonl");
      std::vector<std::uint8_t> px(cache.image_bytes());
      std::int64_t src = 0;
      for (std::int64_t i = 0; i < cache.size(); ++i) {
        cache.read(i, 1, px.data(), nullptr, &src);
        std::int64_t s = 0;
        for (auto v : px) s += v;
        origin_sum[manifest[static_cast<std::size_t>(src)].path] = s;
      }
    }
    std::map<std::string, std::map<std::string, std::string>> by_file;
    for (const auto& row : read_csv(out / "manifest.csv")) by_file[row.at("file_name")] = row;
    std::set<std::string> seen;
    int in_first_shard_synthetic = 0;
    for (std::size_t i = 0; i < j["rows"].size(); ++i) {
      const auto& row = j["rows"][i];
      const auto file = row[0].get<std::string>();
      REQUIRE(by_file.count(file) == 1);
      const auto& m = by_file[file];
      CHECK(seen.insert(file).second);
      CHECK(std::to_string(row[1].get<int>()) == m.at("label"));
      CHECK(row[2].get<int>() == (m.at("source") == "synthetic" ? 1 : 0));
      if (i < 7) in_first_shard_synthetic += row[2].get<int>();
      std::int64_t expected = 0;
      if (m.at("source") == "synthetic") {
        const auto bytes = read_bytes(out / file);
        std::vector<std::uint8_t> px(kRes * kRes * 3);
        REQUIRE(decode_png(std::vector<std::uint8_t>(bytes.begin(), bytes.end()), kRes, 3, px.data()) == "");
        for (auto v : px) expected += v;
      } else {
        expected = origin_sum.at(m.at("origin"));
      }
      CHECK(row[3].get<std::int64_t>() == expected);
    }
    CHECK(seen.size() == 40);
    CHECK(in_first_shard_synthetic > 0);  // shuffled: the first shard is not all real
    CHECK(in_first_shard_synthetic < 7);

    // A killed export: one shard gone, one damaged, a temp file left, no index. The rerun keeps
    // the finished shards and rewrites the rest to the same bytes.
    const auto& hdf5 = hdf5_dir;
    fs::remove(hdf5 / "train-00001-of-00006.h5");
    write_bytes(hdf5 / "train-00002-of-00006.h5", "garbage");
    write_bytes(hdf5 / ".train-00003-of-00006.h5.augment-tmp.1.ab", "partial");
    fs::remove(hdf5 / "index.json");
    {
      std::vector<std::string> loud = {"export", "--only", "export"};
      for (const auto& a : common) if (a != "--quiet") loud.push_back(a);
      for (const auto& a : ex) loud.push_back(a);
      r = run_augment(loud);
    }
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.err.find("kept 26 images") != std::string::npos);
    const auto again = json::parse(read_bytes(hdf5 / "index.json"));
    CHECK(again["shards"] == index["shards"]);
    CHECK_FALSE(fs::exists(hdf5 / ".train-00003-of-00006.h5.augment-tmp.1.ab"));

    // Fewer, larger shards replace the old set.
    r = cmd({"export"}, {"--output", out.string(), "--emit.synthetic_weight", "0.25", "--export.shard_size", "100"});
    REQUIRE(r.code == 0);
    std::set<std::string> files;
    for (const auto& e : fs::directory_iterator(hdf5)) files.insert(e.path().filename().string());
    CHECK(files == std::set<std::string>{"index.json", "train-00000-of-00001.h5"});
  }

  TEST_CASE("export on a full disk: a clear error - no shard under a final name - and the rerun completes") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work", out = dir / "out";
    const auto plan = prepare(input, work);
    sample_fake(work, plan);
    const std::vector<std::string> common = {"--input", input.string(), "--work", work.string(), "--resolution", std::to_string(kRes),
                                             "--subsample.val_fraction", "0", "--subsample.test_fraction", "0", "--quiet",
                                             "--output", out.string()};
    auto cmd = [&](const std::string& stage) {
      std::vector<std::string> args = {stage, "--only", stage};
      args.insert(args.end(), common.begin(), common.end());
      return run_augment(args);
    };
    REQUIRE(cmd("emit").code == 0);
    REQUIRE(cmd("export").code == 0);  // to learn the sizes, then again under the limit
    const auto hdf5_dir = out.parent_path() / (out.filename().string() + "_hdf5");
    const auto shard_bytes = fs::file_size(hdf5_dir / "train-00000-of-00001.h5");
    const auto config_bytes = fs::file_size(work / "config.ini");
    MESSAGE("shard ", shard_bytes, " bytes, config.ini ", config_bytes);
    REQUIRE(shard_bytes > config_bytes + 2048);
    fs::remove_all(hdf5_dir);
    auto r = with_full_disk_at(config_bytes + 1024, [&] { return cmd("export"); });
    INFO(r.err);
    CHECK(r.code == 74);
    CHECK(r.err.find("train-00000-of-00001.h5") != std::string::npos);
    CHECK(r.err.find("disk full") != std::string::npos);
    CHECK(r.err.find("free space and rerun") != std::string::npos);
    if (fs::exists(hdf5_dir)) {
      for (const auto& e : fs::directory_iterator(hdf5_dir)) CHECK(e.path().extension() != ".h5");
      CHECK_FALSE(fs::exists(hdf5_dir / "index.json"));
    }
    r = cmd("export");
    INFO(r.err);
    CHECK(r.code == 0);
    CHECK(fs::exists(hdf5_dir / "train-00000-of-00001.h5"));
    CHECK(fs::exists(hdf5_dir / "index.json"));
  }

  TEST_CASE("emit killed at any of its renames: rerunning the same command finishes without --force and leaves no temp folder") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work";
    const auto plan = prepare(input, work);
    sample_fake(work, plan);
    auto emit = [&](const fs::path& out, const std::vector<std::string>& env) {
      return run_augment({"emit", "--only", "emit", "--input", input.string(), "--work", work.string(), "--resolution",
                          std::to_string(kRes), "--subsample.val_fraction", "0", "--subsample.test_fraction", "0", "--output",
                          out.string(), "--quiet"},
                         env);
    };
    const auto log = dir / "renames.log";
    auto r = emit(dir / "reference", {"LD_PRELOAD=" + std::string(AUGMENT_KILL_AT_RENAME_LIB), "AUGMENT_TEST_RENAME_LOG=" + log.string()});
    INFO(r.err);
    REQUIRE(r.code == 0);
    const auto reference = read_bytes(dir / "reference" / "manifest.csv");
    int renames = 0;
    for (const auto& line : [&] {
           std::vector<std::string> lines;
           std::istringstream in(read_bytes(log));
           for (std::string l; std::getline(in, l);) lines.push_back(l);
           return lines;
         }()) {
      MESSAGE("rename: ", line);
      ++renames;
    }
    REQUIRE(renames >= 5);  // config.ini, the folder, rows.jsonl, dataset.json, done.json, the record
    for (int k = 1; k <= renames; ++k) {
      CAPTURE(k);
      const auto out = dir / ("out" + std::to_string(k));
      r = emit(out, {"LD_PRELOAD=" + std::string(AUGMENT_KILL_AT_RENAME_LIB), "AUGMENT_TEST_KILL_AT_RENAME=" + std::to_string(k)});
      CHECK(r.code == 128 + SIGKILL);
      r = emit(out, {});
      INFO(r.err);
      CHECK(r.code == 0);
      // Same rows as an uninterrupted emit (the manifest names files relative to the folder).
      CHECK(read_bytes(out / "manifest.csv") == reference);
      for (const auto& e : fs::directory_iterator(dir.path())) CHECK(e.path().filename().string().find("augment-tmp") == std::string::npos);
    }
    // Another emit of the same work dir over the last output with other settings still needs --force.
    r = run_augment({"emit", "--only", "emit", "--input", input.string(), "--work", work.string(), "--resolution", std::to_string(kRes),
                     "--subsample.val_fraction", "0", "--subsample.test_fraction", "0", "--output", (dir / "reference").string(),
                     "--emit.synthetic_weight", "0.5", "--quiet"});
    CHECK(r.code == 73);
    CHECK(r.err.find("--force") != std::string::npos);
  }

  TEST_CASE("emit copies synthetic images - checks them at emit and export - and an edited output image makes emit stale") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work", out = dir / "out";
    const auto plan = prepare(input, work);
    sample_fake(work, plan);
    const std::vector<std::string> common = {"--input", input.string(), "--work", work.string(), "--resolution", std::to_string(kRes),
                                             "--subsample.val_fraction", "0", "--subsample.test_fraction", "0", "--output", out.string()};
    auto cmd = [&](const std::string& stage) {
      std::vector<std::string> args = {stage, "--only", stage};
      args.insert(args.end(), common.begin(), common.end());
      return run_augment(args);
    };
    auto status_of = [&](const std::string& stage) {
      std::vector<std::string> args = {"status"};
      args.insert(args.end(), common.begin(), common.end());
      const auto r = run_augment(args);
      std::istringstream in(r.out);
      for (std::string line; std::getline(in, line);) {
        if (line.rfind(stage + " ", 0) == 0) return line;
      }
      return std::string("(no line for ") + stage + ")";
    };
    auto flip_byte = [](const fs::path& p, std::size_t at) {
      auto bytes = read_bytes(p);
      REQUIRE(bytes.size() > at);
      bytes[at] = static_cast<char>(bytes[at] ^ 0x40);
      write_bytes(p, bytes);
    };
    REQUIRE(cmd("emit").code == 0);
    REQUIRE(cmd("export").code == 0);
    CHECK(status_of("emit").find(" done ") != std::string::npos);
    CHECK(status_of("export").find(" done ") != std::string::npos);

    // A synthetic image of the output is a copy: editing the store leaves the dataset alone.
    const auto store_png = work / "sample" / sample_image_relpath(0, 1);
    const auto out_png = out / "R&D" / "synthetic_000001.png";
    const auto original = read_bytes(out_png);
    struct stat st;
    REQUIRE(::stat(out_png.c_str(), &st) == 0);
    CHECK(st.st_nlink == 1);
    flip_byte(store_png, 40);
    CHECK(read_bytes(out_png) == original);
    // ... and emit and export refuse the edited store file by its hash (same size as before).
    auto r = run_augment([&] {
      std::vector<std::string> a = {"emit", "--only", "emit", "--force", "--quiet"};
      a.insert(a.end(), common.begin(), common.end());
      return a;
    }());
    CHECK(r.code == 65);
    CHECK(r.err.find(store_png.string()) != std::string::npos);
    fs::remove_all(folder_beside(out, "_hdf5"));  // else export keeps its finished shard and reads no PNG
    r = cmd("export");
    CHECK(r.code == 65);
    CHECK(r.err.find("does not match its journal line") != std::string::npos);
    flip_byte(store_png, 40);
    REQUIRE(cmd("emit").code == 0);  // the failed emit took its record away

    // An output image changed in place: emit is stale, and the rerun (no --force: it is this
    // emit's own output) restores it.
    flip_byte(out_png, 40);
    CHECK(status_of("emit").find("output modified: " + out_png.string()) != std::string::npos);
    r = cmd("emit");
    INFO(r.err);
    CHECK(r.code == 0);
    CHECK(read_bytes(out_png) == original);
    CHECK(status_of("emit").find(" done ") != std::string::npos);
    fs::remove(out / "with space" / "real_img0.png");
    CHECK(status_of("emit").find("output missing: ") != std::string::npos);
    CHECK(cmd("emit").code == 0);
    CHECK(fs::exists(out / "with space" / "real_img0.png"));

    // A shard deleted or changed: export is stale and the rerun writes it again, byte for byte.
    REQUIRE(cmd("export").code == 0);
    const auto hdf5 = folder_beside(out, "_hdf5");
    const auto shard = hdf5 / "train-00000-of-00001.h5";
    const auto shard_bytes = read_bytes(shard);
    fs::remove(shard);
    CHECK(status_of("export").find("stale") != std::string::npos);
    REQUIRE(cmd("export").code == 0);
    CHECK(read_bytes(shard) == shard_bytes);
    flip_byte(shard, shard_bytes.size() / 2);
    CHECK(status_of("export").find("output missing or modified: " + shard.string()) != std::string::npos);
    r = cmd("export");
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(read_bytes(shard) == shard_bytes);
  }

  TEST_CASE("emit: a full disk while copying real images says so and what to do") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work", out = dir / "out";
    // One real image far larger than config.ini, so a file size limit above it stops its copy.
    write_image(input / "with space" / "big.png", 300, 300, 3, 99);
    const auto plan = prepare(input, work);
    sample_fake(work, plan);
    const std::vector<std::string> args = {"emit", "--only", "emit", "--input", input.string(), "--work", work.string(), "--resolution",
                                           std::to_string(kRes), "--subsample.val_fraction", "0", "--subsample.test_fraction", "0",
                                           "--output", out.string(), "--emit.real", "copy", "--quiet"};
    REQUIRE(run_augment(args).code == 0);
    fs::remove_all(out);
    const auto config_bytes = fs::file_size(work / "config.ini");
    REQUIRE(fs::file_size(input / "with space" / "big.png") > config_bytes + 4096);
    auto r = with_full_disk_at(config_bytes + 4096, [&] { return run_augment(args); });
    INFO(r.err);
    CHECK(r.code == 74);
    CHECK(r.err.find("big.png") != std::string::npos);
    CHECK(r.err.find("disk full") != std::string::npos);
    CHECK(r.err.find("free space and rerun") != std::string::npos);
    CHECK(r.err.find("Input/output error") == std::string::npos);
    CHECK_FALSE(fs::exists(out));
    r = run_augment(args);
    CHECK(r.code == 0);
  }

  TEST_CASE("class folder names: a leading dot or a path is made visible and safe") {
    CHECK(class_folder_name("cat") == "cat");
    CHECK(class_folder_name("with space & more") == "with space & more");
    CHECK(class_folder_name("../evil") == "_.._evil");
    CHECK(class_folder_name(".hidden") == "_.hidden");
    CHECK(class_folder_name("..") == "_..");
    CHECK(class_folder_name(".") == "_.");
    CHECK(class_folder_name("a/b") == "a_b");
    CHECK(class_folder_name("") == "_");
  }

  TEST_CASE("emit fails cleanly: a vanished source image leaves no output and no temp folder") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work", out = dir / "out";
    const auto plan = prepare(input, work);
    sample_fake(work, plan);
    fs::remove(input / "ñandú" / "img3.png");
    const auto r = run_augment({"emit", "--input", input.string(), "--work", work.string(), "--resolution", std::to_string(kRes),
                                "--subsample.val_fraction", "0", "--subsample.test_fraction", "0", "--only", "emit", "--output",
                                out.string(), "--emit.real", "copy", "--quiet"});
    INFO(r.err);
    CHECK(r.code == 66);
    CHECK(r.err.find("img3.png") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
    for (const auto& e : fs::directory_iterator(dir.path())) CHECK(e.path().filename().string().find("augment-tmp") == std::string::npos);
  }
}
