// The model-independent half of sampling: plan, seeds, shards, the sample store and its driver,
// exercised with a fake generator whose images encode their seed.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include <fmt/format.h>

#include "fixtures.h"
#include "manifests/sample_store.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/report.h"
#include "stages/sample_plan.h"
#include "stages/sampling_driver.h"

using namespace augment;
using namespace augment::test;

namespace {

constexpr int kRes = 8;

SamplingSettings fake_settings() {
  SamplingSettings s;
  s.sampler = "fake";
  s.steps = 3;
  s.guidance = 1.5;
  s.conditioning = "cfg";
  s.checkpoint = "ckpt-1";
  s.resolution = kRes;
  s.channels = 3;
  return s;
}

// A small unbalanced plan: 5, 2 and 9 real train images.
SamplePlan small_plan(const std::string& policy = "balance=max") {
  ClassList classes;
  classes.names = {"a cat", "R&D", "ñandú"};
  classes.counts = {5, 2, 9};
  return make_sample_plan(classes, {5, 2, 9}, parse_sample_policy(policy));
}

// Pixels are a function of the seed alone; the confidence too (its low bits).
GeneratedImage fake_image(std::uint64_t seed) {
  GeneratedImage g;
  g.pixels = seeded_bytes(seed, kRes * kRes * 3);
  g.confidence = static_cast<double>(seed % 1000) / 1000.0;
  return g;
}

struct FakeModel {
  std::vector<SampleRequest> seen;
  int calls = 0;
  int stop_on_call = -1;  // throw StopRequested at this call (0-based)
  GenerateFn fn() {
    return [this](const std::vector<SampleRequest>& reqs) {
      if (calls++ == stop_on_call) throw StopRequested(15);
      std::vector<GeneratedImage> out;
      for (const auto& r : reqs) {
        seen.push_back(r);
        out.push_back(fake_image(r.seed));
      }
      return out;
    };
  }
};

SamplingJob job_in(const fs::path& dir, ShardSpec shard = {}, std::int64_t batch = 4) {
  SamplingJob job;
  job.dir = dir;
  job.run_seed = 7;
  job.shard = shard;
  job.batch_size = batch;
  job.settings = fake_settings();
  return job;
}

// Every file under `dir/images` with its bytes.
std::map<std::string, std::string> images_of(const fs::path& dir) {
  std::map<std::string, std::string> out;
  if (!fs::exists(dir / "images")) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir / "images")) {
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = read_bytes(e.path());
  }
  return out;
}

std::string entry_text(const JournalEntry& e) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{}|{}", e.label, e.index, e.seed, e.tries, e.accepted,
                     e.confidence ? *e.confidence : -1, e.file, e.png_hash);
}
std::set<std::string> entries_of(const std::vector<JournalEntry>& v) {
  std::set<std::string> s;
  for (const auto& e : v) s.insert(entry_text(e));
  return s;
}

Reporter& quiet_reporter() {
  static Reporter r(true, "");
  return r;
}

}  // namespace

TEST_SUITE("sample plan") {
  TEST_CASE("policies give the planned synthetic counts") {
    auto plan = small_plan("balance=max");
    CHECK(plan.classes[0].synthetic == 4);
    CHECK(plan.classes[1].synthetic == 7);
    CHECK(plan.classes[2].synthetic == 0);
    plan = small_plan("per_class=6");
    CHECK(plan.classes[0].synthetic == 1);
    CHECK(plan.classes[1].synthetic == 4);
    CHECK(plan.classes[2].synthetic == 0);  // above the target: nothing removed, nothing added
    plan = small_plan("ratio=0.5");
    CHECK(plan.classes[0].synthetic == 3);  // 2.5 rounds away from zero
    CHECK(plan.classes[1].synthetic == 1);
    CHECK(plan.classes[2].synthetic == 5);
    CHECK(plan.total_synthetic() == 9);
    plan = small_plan("synthetic=3");  // the same number for every class, whatever its real count
    for (const auto& c : plan.classes) CHECK(c.synthetic == 3);
    CHECK(plan_table(plan).find("ñandú") != std::string::npos);
    for (const char* bad : {"balance=min", "per_class=0", "per_class=x", "ratio=-1", "ratio", "max", "synthetic=0",
                            "synthetic=-2", "synthetic=99999999999999", "per_class=10000001", "ratio=10001"}) {
      CHECK_THROWS_AS(parse_sample_policy(bad), std::invalid_argument);
    }
    CHECK(parse_sample_policy("synthetic=10000000").per_class == kMaxSyntheticPerClass);
  }

  TEST_CASE("a plan larger than half the memory or the free disk is a configuration error naming the option") {
    const auto plan = small_plan("synthetic=1000000");  // 3 million images
    PlanFootprint room{64.0 * 64 * 3, 64e9, 1e12};
    CHECK_NOTHROW(check_plan_fits(plan, room, "/w"));
    room.memory_bytes = 4e9;  // 3 million x 1 KiB is 3 GB: more than half of 4 GB
    try {
      check_plan_fits(plan, room, "/w");
      FAIL("no error");
    } catch (const UserError& e) {
      CHECK(e.code() == ExitCode::kConfig);
      CHECK(std::string(e.what()).find("sample.policy synthetic=1000000") != std::string::npos);
      CHECK(std::string(e.what()).find("memory") != std::string::npos);
    }
    room.memory_bytes = 64e9;
    room.disk_free_bytes = 1e9;  // at least 3e6 x (1229 + 600) bytes = 5.5 GB
    try {
      check_plan_fits(plan, room, "/w");
      FAIL("no error");
    } catch (const UserError& e) {
      CHECK(e.code() == ExitCode::kConfig);
      CHECK(std::string(e.what()).find("disk") != std::string::npos);
      CHECK(std::string(e.what()).find("/w") != std::string::npos);
    }
  }

  TEST_CASE("plan.json round trip and a clear error when it is missing") {
    TempDir dir;
    const auto plan = small_plan();
    write_sample_plan(dir / "plan.json", plan);
    const auto back = read_sample_plan(dir / "plan.json");
    REQUIRE(back.classes.size() == 3);
    CHECK(back.classes[2].name == "ñandú");
    CHECK(back.classes[1].synthetic == 7);
    CHECK(back.policy == "balance=max");
    try {
      read_sample_plan(dir / "nope.json");
      FAIL("no error");
    } catch (const UserError& e) {
      CHECK(std::string(e.what()).find("no samples: ") != std::string::npos);
      CHECK(std::string(e.what()).find("augment sample") != std::string::npos);
    }
  }

  TEST_CASE("seeds depend on run seed - class - index and try only") {
    const auto s = item_seed(1, "cat", 5);
    CHECK(s == item_seed(1, "cat", 5, 0));
    CHECK(s != item_seed(2, "cat", 5));
    CHECK(s != item_seed(1, "dog", 5));
    CHECK(s != item_seed(1, "cat", 6));
    CHECK(s != item_seed(1, "cat", 5, 1));
    CHECK(item_seed(1, "cat", 5, 1) != item_seed(1, "cat", 5, 2));
    CHECK(s < (1ull << 63));
  }

  TEST_CASE("shards partition the global list - K/N and SLURM arrays") {
    const auto plan = small_plan("per_class=20");
    const auto all = plan_items(plan);
    CHECK(all.size() == 15 + 18 + 11);
    std::vector<SampleItem> merged;
    for (int k = 0; k < 3; ++k) {
      for (const auto& it : shard_items(plan, ShardSpec{k, 3})) {
        merged.push_back(it);
        CHECK(shard_of(plan, it, 3) == k);
      }
    }
    std::sort(merged.begin(), merged.end());
    CHECK(merged == all);
    CHECK(parse_shard("2/5").index == 2);
    CHECK(parse_shard("2/5").count == 5);
    for (const char* bad : {"5/5", "-1/3", "1", "a/b", "0/0"}) CHECK_THROWS_AS(parse_shard(bad), std::invalid_argument);
    std::map<std::string, const char*> env;
    auto getenv = [&](const char* k) -> const char* { return env.count(k) ? env[k] : nullptr; };
    CHECK(resolve_shard("", getenv).count == 1);
    env["SLURM_ARRAY_TASK_ID"] = "3";
    env["SLURM_ARRAY_TASK_COUNT"] = "4";
    CHECK(resolve_shard("", getenv).index == 3);
    env["SLURM_ARRAY_TASK_MIN"] = "1";  // --array=1-4
    CHECK(resolve_shard("", getenv).index == 2);
    CHECK(resolve_shard("1/2", getenv).count == 2);  // the option wins
    env["SLURM_ARRAY_TASK_ID"] = "9";
    CHECK_THROWS_AS(resolve_shard("", getenv), UserError);
  }
}

TEST_SUITE("sample store") {
  TEST_CASE("batch size does not change a single byte") {
    TempDir d1, d7;
    const auto plan = small_plan();
    FakeModel m1, m7;
    run_sampling(job_in(d1.path(), {}, 1), plan, m1.fn(), quiet_reporter());
    const auto s7 = run_sampling(job_in(d7.path(), {}, 7), plan, m7.fn(), quiet_reporter());
    CHECK(m1.calls == 11);
    CHECK(m7.calls == 2);
    CHECK(s7.generated == 11);
    const auto i1 = images_of(d1.path());
    CHECK(i1.size() == 11);
    CHECK(i1 == images_of(d7.path()));
    CHECK(entries_of(read_journal(d1 / "journal-0-of-1.jsonl")) ==
          entries_of(read_journal(d7 / "journal-0-of-1.jsonl")));
    // The PNG holds exactly the generated pixels.
    const auto png = read_bytes(d1 / sample_image_relpath(1, 3));
    std::vector<std::uint8_t> pixels(kRes * kRes * 3);
    REQUIRE(decode_png(std::vector<std::uint8_t>(png.begin(), png.end()), kRes, 3, pixels.data()) == "");
    CHECK(pixels == fake_image(item_seed(7, "R&D", 3)).pixels);
  }

  TEST_CASE("three shards merged equal the unsharded run byte for byte") {
    TempDir whole, parts;
    const auto plan = small_plan("per_class=12");
    FakeModel m;
    run_sampling(job_in(whole.path()), plan, m.fn(), quiet_reporter());
    for (int k = 0; k < 3; ++k) {
      FakeModel mk;
      const auto s = run_sampling(job_in(parts.path(), ShardSpec{k, 3}, 5), plan, mk.fn(), quiet_reporter());
      CHECK(s.generated == static_cast<std::int64_t>(shard_items(plan, ShardSpec{k, 3}).size()));
    }
    CHECK(images_of(whole.path()).size() == static_cast<std::size_t>(plan.total_synthetic()));
    CHECK(images_of(whole.path()) == images_of(parts.path()));
    const auto a = merge_journals(whole.path(), plan), b = merge_journals(parts.path(), plan);
    CHECK(b.shard_count == 3);
    CHECK(entries_of(a.accepted) == entries_of(b.accepted));
    CHECK(a.accepted.size() == static_cast<std::size_t>(plan.total_synthetic()));
  }

  TEST_CASE("a killed run resumes without regenerating anything written - also after a torn journal line") {
    TempDir ref, dir;
    const auto plan = small_plan("per_class=15");  // 10 + 13 + 6 = 29 items
    FakeModel full;
    run_sampling(job_in(ref.path(), {}, 4), plan, full.fn(), quiet_reporter());

    FakeModel first;
    first.stop_on_call = 3;  // three batches of 4 finish, then SIGTERM
    CHECK_THROWS_AS(run_sampling(job_in(dir.path(), {}, 4), plan, first.fn(), quiet_reporter()), StopRequested);
    const auto journal = dir / "journal-0-of-1.jsonl";
    CHECK(read_journal(journal).size() == 12);
    // kill -9 in the middle of an append: the last line is cut short.
    auto text = read_bytes(journal);
    write_bytes(journal, text.substr(0, text.size() - 25));
    std::uint64_t torn = 0;
    const auto survived = read_journal(journal, &torn);
    CHECK(survived.size() == 11);
    CHECK(torn > 0);

    FakeModel second;
    const auto s = run_sampling(job_in(dir.path(), {}, 3), plan, second.fn(), quiet_reporter());
    CHECK(s.generated == 29 - 11);
    std::set<std::pair<int, std::int64_t>> done;
    for (const auto& e : survived) done.insert({e.label, e.index});
    for (const auto& r : second.seen) CHECK(done.count({r.label, r.index}) == 0);
    CHECK(images_of(dir.path()) == images_of(ref.path()));
    // The torn tail was cut before appending: every line parses, no duplicates.
    std::uint64_t torn_after = 1;
    CHECK(read_journal(journal, &torn_after).size() == 29);
    CHECK(torn_after == 0);
    CHECK(entries_of(merge_journals(dir.path(), plan).accepted) ==
          entries_of(merge_journals(ref.path(), plan).accepted));

    // A third run has nothing to do.
    FakeModel third;
    CHECK(run_sampling(job_in(dir.path()), plan, third.fn(), quiet_reporter()).generated == 0);
    CHECK(third.calls == 0);
    // A PNG deleted behind the store's back is regenerated, alone.
    fs::remove(dir / sample_image_relpath(0, 2));
    CHECK(damaged_sample(dir.path(), plan, {journal}).find(sample_image_relpath(0, 2)) != std::string::npos);
    FakeModel fourth;
    CHECK(run_sampling(job_in(dir.path()), plan, fourth.fn(), quiet_reporter()).generated == 1);
    CHECK(damaged_sample(dir.path(), plan, {journal}).empty());
    // So is one changed in place with its size kept: the journal's hash tells.
    {
      auto png = read_bytes(dir / sample_image_relpath(1, 3));
      png[png.size() / 2] = static_cast<char>(png[png.size() / 2] ^ 0x10);
      write_bytes(dir / sample_image_relpath(1, 3), png);
    }
    CHECK(damaged_sample(dir.path(), plan, {journal}).find(sample_image_relpath(1, 3)) != std::string::npos);
    FakeModel fifth;
    CHECK(run_sampling(job_in(dir.path()), plan, fifth.fn(), quiet_reporter()).generated == 1);
    CHECK(images_of(dir.path()) == images_of(ref.path()));
    // A damaged line followed by valid ones is not silently skipped.
    text = read_bytes(journal);
    write_bytes(journal, "{\"broken\n" + text);
    CHECK_THROWS_AS(read_journal(journal), UserError);
  }

  TEST_CASE("the confidence filter retries with the next seeds and reports give-ups") {
    TempDir d1, d5;
    const auto plan = small_plan("per_class=20");
    auto job = job_in(d1.path(), {}, 1);
    job.min_confidence = 0.6;
    job.max_tries = 3;
    FakeModel m1, m5;
    const auto s1 = run_sampling(job, plan, m1.fn(), quiet_reporter());
    job.dir = d5.path();
    job.batch_size = 5;
    const auto s5 = run_sampling(job, plan, m5.fn(), quiet_reporter());
    CHECK(images_of(d1.path()) == images_of(d5.path()));
    const auto merged = merge_journals(d1.path(), plan);
    CHECK(merged.accepted.size() + merged.rejected.size() == static_cast<std::size_t>(plan.total_synthetic()));
    CHECK_FALSE(merged.rejected.empty());  // 0.4^3 of 44 items
    std::int64_t tries = 0;
    for (const auto& e : merged.accepted) {
      CHECK(*e.confidence >= 0.6);
      CHECK(e.tries <= 3);
      CHECK(e.seed == item_seed(7, e.class_name, e.index, e.tries - 1));
      tries += e.tries;
    }
    for (const auto& e : merged.rejected) {
      CHECK(e.tries == 3);
      CHECK(*e.confidence < 0.6);
      CHECK(e.file.empty());
      CHECK_FALSE(fs::exists(d1 / sample_image_relpath(e.label, e.index)));
      tries += 3;
    }
    CHECK(tries == s1.generated);
    CHECK(s1.generated == s5.generated);
    std::int64_t accepted = 0, per_class_tries = 0;
    for (const auto& st : s1.classes) {
      accepted += st.accepted;
      per_class_tries += st.tries;
    }
    CHECK(accepted == static_cast<std::int64_t>(merged.accepted.size()));
    CHECK(per_class_tries == s1.generated);
    // Rerunning with the same filter has nothing to do; loosening it regenerates only the give-ups.
    FakeModel again;
    CHECK(run_sampling(job, plan, again.fn(), quiet_reporter()).generated == 0);
    job.min_confidence = 0.0;
    FakeModel loose;
    CHECK(run_sampling(job, plan, loose.fn(), quiet_reporter()).generated ==
          static_cast<std::int64_t>(merged.rejected.size()));
  }

  TEST_CASE("merging names the missing shard - the duplicated item and mixed shard counts") {
    TempDir dir;
    const auto plan = small_plan();
    auto expect_error = [&](const std::string& needle) {
      try {
        merge_journals(dir.path(), plan);
        FAIL("no error for " << needle);
      } catch (const UserError& e) {
        INFO(e.what());
        CHECK(std::string(e.what()).find(needle) != std::string::npos);
      }
    };
    expect_error("no samples: run `augment sample` first");
    FakeModel m;
    run_sampling(job_in(dir.path(), ShardSpec{0, 2}), plan, m.fn(), quiet_reporter());
    expect_error("shard 1 of 2 is missing");
    expect_error("--shard 1/2");
    run_sampling(job_in(dir.path(), ShardSpec{1, 2}), plan, m.fn(), quiet_reporter());
    CHECK(merge_journals(dir.path(), plan).accepted.size() == 11);
    // A line of shard 0 copied into shard 1's journal: the same image twice.
    const auto line0 = read_bytes(dir / "journal-0-of-2.jsonl");
    write_bytes(dir / "journal-1-of-2.jsonl",
                read_bytes(dir / "journal-1-of-2.jsonl") + line0.substr(0, line0.find('\n') + 1));
    expect_error("is in both");
    fs::remove(dir / "journal-1-of-2.jsonl");
    run_sampling(job_in(dir.path(), ShardSpec{0, 1}), plan, m.fn(), quiet_reporter());
    expect_error("different shard counts");
    fs::remove(dir / "journal-0-of-2.jsonl");
    // An incomplete journal: the missing image and its shard are named.
    auto text = read_bytes(dir / "journal-0-of-1.jsonl");
    text = text.substr(0, text.rfind('\n', text.size() - 2) + 1);
    write_bytes(dir / "journal-0-of-1.jsonl", text);
    expect_error("1 planned synthetic images are missing");
    // Different settings across journals.
    auto job = job_in(dir.path(), ShardSpec{0, 1});
    job.settings.checkpoint = "ckpt-2";
    FakeModel m2;
    run_sampling(job, plan, m2.fn(), quiet_reporter());
    CHECK(m2.seen.size() == 11);  // a new checkpoint regenerates everything
    CHECK(merge_journals(dir.path(), plan).settings.checkpoint == "ckpt-2");
  }
}
