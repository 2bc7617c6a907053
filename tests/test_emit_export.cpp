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
#include "emit_fixtures.h"
#include "fixtures.h"
#include "manifests/image_cache.h"
#include "manifests/image_record.h"
#include "manifests/sample_store.h"
#include "pipeline/base/csv.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/report.h"
#include "pipeline/base/sha256.h"
#include "stages/emit_stage.h"
#include "stages/sample_plan.h"
#include "stages/sampling_driver.h"

using namespace augment;
using namespace augment::test;
using nlohmann::json;

TEST_SUITE("emit and export") {
  TEST_CASE("emit writes the image folder - manifests and card - export writes shards h5py reads") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work", out = dir / "out";
    const auto plan = prepare(input, work);
    const std::vector<std::string> common = test::stage_args(input, work, kRes, {"--quiet"});
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
    for (const auto& e : fs::directory_iterator(dir.path()))
      CHECK(e.path().filename().string().find("augment-tmp") == std::string::npos);

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
    for (const auto& row : read_csv(out / "manifest.csv"))
      CHECK(row.at("weight") == (row.at("source") == "synthetic" ? "0.25" : "1.0"));

    // Export: 40 images in shards of 7.
    const std::vector<std::string> ex = {"--output", out.string(),          "--emit.synthetic_weight",
                                         "0.25",     "--export.shard_size", "7"};
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
                "    out['attrs'] = [int(f.attrs['height']), int(f.attrs['width']), int(f.attrs['channels']), "
                "int(f.attrs['format_version'])]\n"
                "    im = f['images']\n"
                "    out.setdefault('shapes', []).append(list(im.shape))\n"
                "    out['dtype'] = str(im.dtype)\n"
                "    out.setdefault('filters', []).append([im.compression, bool(im.shuffle), bool(im.fletcher32), "
                "list(im.chunks)])\n"
                "    files = [s.decode() if isinstance(s, bytes) else s for s in f['files'][:]]\n"
                "    for i in range(im.shape[0]):\n"
                "        out['rows'].append([files[i], int(f['labels'][i]), int(f['is_synthetic'][i]), "
                "int(im[i].astype('int64').sum())])\n"
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
    CHECK(j["filters"][0][3] ==
          json::array({7, kRes, kRes, 3}));  // 10 KiB worth of 192-byte images, capped by the shard
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
      for (const auto& a : common)
        if (a != "--quiet") loud.push_back(a);
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
}
