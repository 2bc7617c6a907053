// The defaults sized by the data and the device (stages/run_defaults.h), and how the runner keeps a
// finished stage when only a default changed.
#include <doctest/doctest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "pipeline/base/config.h"
#include "pipeline/command/cli.h"
#include "stages/geometry_advice.h"
#include "stages/run_defaults.h"
#include "stages/stage_list.h"

using namespace augment;
using namespace augment::test;

namespace {

std::string value_in_ini(const fs::path& ini, const std::string& section, const std::string& name) {
  std::ifstream in(ini);
  std::string line, current;
  while (std::getline(in, line)) {
    if (!line.empty() && line.front() == '[') current = line.substr(1, line.size() - 2);
    if (current == section && line.rfind(name + " = ", 0) == 0) return line.substr(name.size() + 3);
  }
  return "<missing>";
}

// Classes a and b with `n` RGB images of side x side each.
void two_classes(const fs::path& root, int n, int side) {
  for (int i = 0; i < n; ++i) {
    write_image(root / "a" / (std::to_string(i) + ".png"), side, side, 3, i);
    write_image(root / "b" / (std::to_string(i) + ".png"), side, side, 3, 10 + i);
  }
}

}  // namespace

TEST_SUITE("defaults") {
  TEST_CASE("the size table: the U-Net follows the resolution - the budget the device") {
    const auto r32 = sized_defaults(32, "default", false);
    CHECK(r32.row == "28-32 px");
    CHECK(r32.warning.empty());
    CHECK(r32.values.at("train.channels") == "32");
    CHECK(r32.values.at("train.channel_mult") == "1,2,2");
    CHECK(r32.values.at("train.attention") == "8");
    CHECK(r32.values.at("train.minutes") == "60");
    CHECK(r32.values.at("train.batch_size") == "32");

    const auto r28 = sized_defaults(28, "default", false);
    CHECK(r28.values.at("train.attention") == "7");  // 28/14/7: the bundled example's recipe

    const auto r64 = sized_defaults(64, "default", false);
    CHECK(r64.row == "64 px");
    CHECK(r64.values.at("train.channel_mult") == "1,2,2,2");
    CHECK(r64.values.at("train.attention") == "8");

    const auto r128 = sized_defaults(128, "default", false);
    CHECK(r128.values.at("train.channel_mult") == "1,1,2,2,2");
    CHECK(r128.values.at("train.attention") == "8");

    // On CUDA the steps end the run, with a wider model and larger batches.
    const auto gpu = sized_defaults(32, "default", true);
    CHECK(gpu.values.at("train.minutes") == "0");
    CHECK(gpu.values.at("train.steps") == "20000");
    CHECK(gpu.values.at("train.channels") == "64");
    CHECK(gpu.values.at("train.batch_size") == "128");
    CHECK(gpu.note.find("CUDA") != std::string::npos);
  }

  TEST_CASE("presets scale the model and the budget together") {
    const auto quick = sized_defaults(64, "quick", false), thorough = sized_defaults(64, "thorough", false);
    CHECK(quick.values.at("train.minutes") == "20");
    CHECK(thorough.values.at("train.minutes") == "180");
    CHECK(std::stoi(quick.values.at("train.channels")) < 32);
    CHECK(std::stoi(thorough.values.at("train.channels")) > 32);
    CHECK(quick.values.at("train.channel_mult") == thorough.values.at("train.channel_mult"));
    CHECK_THROWS(sized_defaults(64, "huge", false));
  }

  TEST_CASE("a resolution between rows uses the nearest row and says which - odd sides get fewer levels") {
    const auto r40 = sized_defaults(40, "default", false);
    CHECK(r40.row == "28-32 px");  // 8 from 32 and 8 from 48: the smaller model
    CHECK(r40.warning.find("cache.resolution 40 is not a row") != std::string::npos);
    CHECK(r40.warning.find("nearest row, 28-32 px") != std::string::npos);
    CHECK(r40.values.at("train.attention") == "10");

    const auto r30 = sized_defaults(30, "default", false);
    CHECK(r30.values.at("train.channel_mult") == "1,2");  // 30 halves once: 30/15
    CHECK(r30.values.at("train.attention") == "15");
    CHECK(r30.warning.find("2 levels (30,15)") != std::string::npos);

    const auto r8 = sized_defaults(8, "default", false);  // the lowest level keeps 4 px
    CHECK(r8.values.at("train.channel_mult") == "1,2");
    CHECK(r8.values.at("train.attention") == "4");
    const auto r300 = sized_defaults(300, "default", false);
    CHECK(r300.row == "96-128 px");
    CHECK(r300.warning.find("not a row") != std::string::npos);
  }

  TEST_CASE("applied to a config: an option the user set wins - the rest are sized and marked") {
    OptionRegistry registry;
    declare_all_options(registry);
    Config config(registry);
    parse_command_line({"--resolution", "64", "--train.channels", "40", "--device", "cpu"}, config);
    apply_sized_defaults(config);
    CHECK(config.value("train.channels") == "40");
    CHECK(config.value("train.channel_mult") == "1,2,2,2");
    CHECK(config.value("train.minutes") == "60");
    CHECK_FALSE(config.is_set("train.minutes"));
    const auto line = sized_defaults_line(config);
    CAPTURE(line);
    CHECK(line.find("size table row 64 px for 64 px, preset default, on CPU") != std::string::npos);
    CHECK(line.find("channel_mult 1,2,2,2") != std::string::npos);
    CHECK(line.find("channels 40") == std::string::npos);  // the user's value is not the table's
    CHECK(is_sized_option("train.minutes"));
    CHECK_FALSE(is_sized_option("train.schedule"));
  }

  TEST_CASE("a run with no train options gets the sized model - the preset flag scales it") {
    TempDir dir;
    two_classes(dir / "in", 4, 20);
    const auto work = dir / "work";
    auto r = run_augment(
        {"scan", "--input", (dir / "in").string(), "--work", work.string(), "--resolution", "64", "--quiet"});
    REQUIRE(r.code == 0);
    CHECK(value_in_ini(work / "config.ini", "train", "channel_mult") == "1,2,2,2");
    CHECK(value_in_ini(work / "config.ini", "train", "attention") == "8");
    r = run_augment({"scan", "--input", (dir / "in").string(), "--work", work.string(), "--resolution", "32",
                     "--preset", "thorough", "--device", "cpu", "--quiet"});
    REQUIRE(r.code == 0);
    CHECK(value_in_ini(work / "config.ini", "train", "channel_mult") == "1,2,2");
    CHECK(value_in_ini(work / "config.ini", "train", "minutes") == "180");
    CHECK(value_in_ini(work / "config.ini", "train", "channels") == "48");
    r = run_augment({"help", "defaults"});
    CHECK(r.code == 0);
    CHECK(r.out.find("96-128 px") != std::string::npos);
  }

  TEST_CASE(
      "a finished stage keeps its options when only a default changed - status says so - --force or an explicit value "
      "reruns") {
    TempDir dir;
    two_classes(dir / "in", 5, 16);
    const auto work = dir / "work";
    const std::vector<std::string> base = {"--input",     (dir / "in").string(), "--work",
                                           work.string(), "--resolution",        "8"};
    auto with = [&](std::vector<std::string> head, std::vector<std::string> tail = {}) {
      head.insert(head.end(), base.begin(), base.end());
      head.insert(head.end(), tail.begin(), tail.end());
      return head;
    };
    REQUIRE(run_augment(with({"cache"}, {"--quiet"})).code == 0);
    const auto cache_h5 = read_bytes(work / "cache" / "train.h5");
    // As if an older augment had a different default for cache.fit: its record says pad.
    const auto rec_path = work / "records" / "cache.json";
    auto rec = nlohmann::json::parse(read_bytes(rec_path));
    REQUIRE(rec["options"]["cache.fit"] == "crop");
    rec["options"]["cache.fit"] = "pad";
    rec["options_hash"] = "of the older options";
    write_bytes(rec_path, rec.dump(2));

    auto r = run_augment(with({"status"}));
    CAPTURE(r.out);
    CHECK(r.out.find("cache        done") != std::string::npos);
    CHECK(r.out.find("keeps cache.fit = pad (default now crop)") != std::string::npos);

    r = run_augment(with({"cache"}));
    CAPTURE(r.err);
    CHECK(r.code == 0);
    CHECK(r.err.find("cache: keeps the options it ran with where only their defaults changed: cache.fit = pad") !=
          std::string::npos);
    CHECK(r.err.find("cache: up to date") != std::string::npos);
    CHECK(r.err.find("== cache done") == std::string::npos);
    CHECK(read_bytes(work / "cache" / "train.h5") == cache_h5);
    // The work dir's configuration says what its stages ran with: --work alone continues with it.
    CHECK(value_in_ini(work / "config.ini", "cache", "fit") == "pad");

    // Asking for the value explicitly is a change.
    r = run_augment(with({"status"}, {"--cache.fit", "crop"}));
    CHECK(r.out.find("cache        stale") != std::string::npos);
    // --force reruns it with today's default.
    r = run_augment(with({"cache"}, {"--force"}));
    CHECK(r.code == 0);
    CHECK(r.err.find("== cache done") != std::string::npos);
    CHECK(nlohmann::json::parse(read_bytes(rec_path))["options"]["cache.fit"] == "crop");
  }

  TEST_CASE(
      "scan advises a resolution and channel count that suit small or grayscale images - unless the user chose them") {
    std::vector<ImageRecord> gray_small(10);
    for (auto& r : gray_small) {
      r.width = 28;
      r.height = 28;
      r.channels = 1;
    }
    auto advice = geometry_advice(gray_small, 64, 3, false, false);
    REQUIRE(advice.size() == 2);
    CHECK(advice[0].find("10 of 10 images are smaller than cache.resolution 64 (median short side 28 px)") !=
          std::string::npos);
    CHECK(advice[0].find("--resolution 28") != std::string::npos);
    CHECK(advice[1].find("--channels 1") != std::string::npos);
    CHECK(geometry_advice(gray_small, 64, 3, true, true).empty());
    CHECK(geometry_advice(gray_small, 28, 1, false, false).empty());

    std::vector<ImageRecord> photos(10);
    for (std::size_t i = 0; i < photos.size(); ++i) {
      photos[i].width = 500;
      photos[i].height = i < 3 ? 40 : 375;  // a few small ones do not matter
      photos[i].channels = i == 0 ? 1 : 3;
    }
    CHECK(geometry_advice(photos, 64, 3, false, false).empty());
  }
}
