// End to end, emit and export when things go wrong: a full disk, kills at every rename, edited
// outputs, vanished sources.
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
  TEST_CASE("export on a full disk: a clear error - no shard under a final name - and the rerun completes") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work", out = dir / "out";
    const auto plan = prepare(input, work);
    sample_fake(work, plan);
    const std::vector<std::string> common = test::stage_args(input, work, kRes, {"--quiet", "--output", out.string()});
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

  TEST_CASE(
      "emit killed at any of its renames: rerunning the same command finishes without --force and leaves no temp "
      "folder") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work";
    const auto plan = prepare(input, work);
    sample_fake(work, plan);
    auto emit = [&](const fs::path& out, const std::vector<std::string>& env) {
      return run_augment({"emit", "--only", "emit", "--input", input.string(), "--work", work.string(), "--resolution",
                          std::to_string(kRes), "--subsample.val_fraction", "0", "--subsample.test_fraction", "0",
                          "--output", out.string(), "--quiet"},
                         env);
    };
    const auto log = dir / "renames.log";
    auto r = emit(dir / "reference",
                  {"LD_PRELOAD=" + std::string(AUGMENT_KILL_AT_RENAME_LIB), "AUGMENT_TEST_RENAME_LOG=" + log.string()});
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
      r = emit(out, {"LD_PRELOAD=" + std::string(AUGMENT_KILL_AT_RENAME_LIB),
                     "AUGMENT_TEST_KILL_AT_RENAME=" + std::to_string(k)});
      CHECK(r.code == 128 + SIGKILL);
      r = emit(out, {});
      INFO(r.err);
      CHECK(r.code == 0);
      // Same rows as an uninterrupted emit (the manifest names files relative to the folder).
      CHECK(read_bytes(out / "manifest.csv") == reference);
      for (const auto& e : fs::directory_iterator(dir.path()))
        CHECK(e.path().filename().string().find("augment-tmp") == std::string::npos);
    }
    // Another emit of the same work dir over the last output with other settings still needs --force.
    r = run_augment({"emit", "--only", "emit", "--input", input.string(), "--work", work.string(), "--resolution",
                     std::to_string(kRes), "--subsample.val_fraction", "0", "--subsample.test_fraction", "0",
                     "--output", (dir / "reference").string(), "--emit.synthetic_weight", "0.5", "--quiet"});
    CHECK(r.code == 73);
    CHECK(r.err.find("--force") != std::string::npos);
  }

  TEST_CASE(
      "emit copies synthetic images - checks them at emit and export - and an edited output image makes emit stale") {
    TempDir dir;
    const auto input = dir / "data", work = dir / "work", out = dir / "out";
    const auto plan = prepare(input, work);
    sample_fake(work, plan);
    const std::vector<std::string> common = test::stage_args(input, work, kRes, {"--output", out.string()});
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
    std::vector<std::string> args = {"emit", "--only", "emit"};
    const auto options =
        test::stage_args(input, work, kRes, {"--output", out.string(), "--emit.real", "copy", "--quiet"});
    args.insert(args.end(), options.begin(), options.end());
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
    const auto r = run_augment({"emit", "--input", input.string(), "--work", work.string(), "--resolution",
                                std::to_string(kRes), "--subsample.val_fraction", "0", "--subsample.test_fraction", "0",
                                "--only", "emit", "--output", out.string(), "--emit.real", "copy", "--quiet"});
    INFO(r.err);
    CHECK(r.code == 66);
    CHECK(r.err.find("img3.png") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
    for (const auto& e : fs::directory_iterator(dir.path()))
      CHECK(e.path().filename().string().find("augment-tmp") == std::string::npos);
  }
}
