#include <doctest/doctest.h>

#include "fixtures.h"
#include "pipeline/base/config.h"
#include "pipeline/base/input_root.h"
#include "pipeline/command/cli.h"
#include "pipeline/context.h"
#include "stages/cache_stage.h"
#include "stages/stage_list.h"
#include "stages/subsample_stage.h"

using namespace augment;
using augment::test::TempDir;
using augment::test::write_bytes;

namespace {

OptionRegistry full_registry() {
  OptionRegistry r;
  declare_all_options(r);
  return r;
}

ExitCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.code();
  }
  return ExitCode::kOk;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_SUITE("config") {
  TEST_CASE("defaults come from the option structs") {
    const auto reg = full_registry();
    Config c(reg);
    const auto cache = load_options<CacheOptions>(c);
    CHECK(cache.resolution == CacheOptions{}.resolution);
    CHECK(cache.fit == Fit::kCrop);
    CHECK(reg.find("resolution")->key == "cache.resolution");
  }

  TEST_CASE("command line: dotted names and aliases set the same field") {
    const auto reg = full_registry();
    Config a(reg), b(reg);
    parse_command_line({"--cache.resolution", "28"}, a);
    parse_command_line({"--resolution=28"}, b);
    CHECK(load_options<CacheOptions>(a).resolution == 28);
    CHECK(load_options<CacheOptions>(b).resolution == 28);
  }

  TEST_CASE("duplicate flags are rejected - also as name plus alias") {
    const auto reg = full_registry();
    Config c(reg);
    CHECK(code_of([&] { parse_command_line({"--resolution", "28", "--resolution", "32"}, c); }) == ExitCode::kUsage);
    Config d(reg);
    CHECK(code_of([&] {
            parse_command_line({"--resolution", "28", "--cache.resolution", "32"}, d);
          }) == ExitCode::kUsage);
  }

  TEST_CASE("unknown options name the key and suggest the closest") {
    const auto reg = full_registry();
    Config c(reg);
    const auto msg = message_of([&] { parse_command_line({"--resolutoin", "28"}, c); });
    CHECK(msg.find("resolutoin") != std::string::npos);
    CHECK(msg.find("did you mean '--resolution'") != std::string::npos);
    CHECK(code_of([&] { parse_command_line({"--nope"}, c); }) == ExitCode::kUsage);
  }

  TEST_CASE("bad values name the key and the accepted values") {
    const auto reg = full_registry();
    Config c(reg);
    auto msg = message_of([&] { parse_command_line({"--cache.fit", "zoom"}, c); });
    CHECK(msg.find("cache.fit") != std::string::npos);
    CHECK(msg.find("crop, pad, stretch") != std::string::npos);
    CHECK(code_of([&] { parse_command_line({"--resolution", "abc"}, c); }) == ExitCode::kConfig);
    CHECK(code_of([&] { parse_command_line({"--resolution", "4"}, c); }) == ExitCode::kConfig);
    CHECK(code_of([&] { parse_command_line({"--subsample.val_fraction", "1.5"}, c); }) == ExitCode::kConfig);
  }

  TEST_CASE("INI sections map to dotted keys and the command line wins") {
    TempDir dir;
    write_bytes(dir / "job.ini",
                "# comment\nseed = 7\n[cache]\nresolution = 48\nfit = pad\n[subsample]\nclasses = \"a, b\",c\n");
    const auto reg = full_registry();
    Config c(reg);
    parse_command_line({"--config", (dir / "job.ini").string(), "--resolution", "32"}, c);
    CHECK(load_options<CacheOptions>(c).resolution == 32);  // command line wins
    CHECK(load_options<CacheOptions>(c).fit == Fit::kPad);
    CHECK(load_options<GlobalOptions>(c).seed == 7);
    const auto classes = load_options<SubsampleOptions>(c).classes;
    REQUIRE(classes.size() == 2);
    CHECK(classes[0] == "a, b");
    CHECK(classes[1] == "c");
  }

  TEST_CASE("unknown INI keys and sections are errors naming file and line") {
    TempDir dir;
    write_bytes(dir / "bad.ini", "[cache]\nresolution = 32\nresolushun = 3\n");
    const auto reg = full_registry();
    Config c(reg);
    const auto msg = message_of([&] { parse_command_line({"--config", (dir / "bad.ini").string()}, c); });
    CHECK(msg.find("bad.ini:3") != std::string::npos);
    CHECK(msg.find("cache.resolushun") != std::string::npos);
    Config d(reg);
    write_bytes(dir / "bad2.ini", "[nosuchstage]\nx = 1\n");
    CHECK(code_of([&] { parse_command_line({"--config", (dir / "bad2.ini").string()}, d); }) == ExitCode::kConfig);
  }

  TEST_CASE("the effective configuration written as INI reads back to the same values") {
    TempDir dir;
    const auto reg = full_registry();
    Config c(reg);
    parse_command_line({"--input", "/data/a,b", "--input", "dog=/x y/#z", "--classes", "\"x, y\",z", "--fit", "stretch",
                        "--seed", "3", "--work", "/w"},
                       c);
    write_bytes(dir / "effective.ini", c.to_ini());
    Config d(reg);
    apply_ini_file(dir / "effective.ini", d);
    for (const auto& [key, info] : reg.all()) {
      if (info.transient) continue;
      CHECK_MESSAGE(d.value(key) == c.value(key), key);
    }
    CHECK(load_options<GlobalOptions>(d).input == std::vector<std::string>{"/data/a,b", "dog=/x y/#z"});
  }
}

TEST_CASE("--input values: NAME=DIR names a class - an existing folder with '=' and a bare =DIR are paths") {
  augment::test::TempDir dir;
  const auto odd = dir / "a=b";
  fs::create_directories(odd);
  auto r = parse_input_root("dog=/data/dogs");
  CHECK(r.class_name == "dog");
  CHECK(r.path == fs::path("/data/dogs"));
  r = parse_input_root(odd.string());
  CHECK(r.class_name.empty());
  CHECK(r.path == odd);
  r = parse_input_root("=/data/dogs");
  CHECK(r.class_name.empty());
  CHECK(r.path == fs::path("=/data/dogs"));
  r = parse_input_root("/data/plain");
  CHECK(r.class_name.empty());
  CHECK(r.path == fs::path("/data/plain"));
}
