#include "stages/subsample_stage.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/rng.h"
#include "pipeline/context.h"
#include "pipeline/work_paths.h"

namespace augment {

void SubsampleOptions::bind(OptionBinder<SubsampleOptions>& b) {
  b.add("classes", &SubsampleOptions::classes,
        "keep only these classes: comma-separated names, CSV-quoted when a name has a comma", {},
        kField.with_alias("classes"));
  b.add("top_k", &SubsampleOptions::top_k, "keep the k classes with the most images (0: all)",
        at_least<std::int64_t>(0), kField.with_alias("top-k"));
  b.add("min_per_class", &SubsampleOptions::min_per_class, "drop classes with fewer images than this",
        at_least<std::int64_t>(1), kField.with_alias("min-per-class"));
  b.add("max_per_class", &SubsampleOptions::max_per_class,
        "keep at most this many images per class, chosen at random (0: all)", at_least<std::int64_t>(0),
        kField.with_alias("max-per-class"));
  b.add("val_fraction", &SubsampleOptions::val_fraction, "share of each class held out for validation",
        in_range(0.0, 0.9));
  b.add("test_fraction", &SubsampleOptions::test_fraction, "share of each class held out for testing",
        in_range(0.0, 0.9));
}

namespace {

enum Split { kTrain = 0, kVal = 1, kTest = 2 };
const char* const kSplitNames[] = {"train", "val", "test"};

}  // namespace

std::vector<ImageRecord> select_and_split(const std::vector<ImageRecord>& index, const ClassList& scanned,
                                          const SubsampleOptions& o, std::uint64_t seed, ClassList& classes,
                                          std::vector<std::string>* notes) {
  if (o.val_fraction + o.test_fraction >= 1.0) {
    throw UserError(
        ExitCode::kConfig,
        fmt::format(
            "subsample.val_fraction + subsample.test_fraction = {} leaves nothing to train on; keep the sum below 1",
            o.val_fraction + o.test_fraction));
  }
  auto note = [&](std::string s) {
    if (notes) notes->push_back(std::move(s));
  };
  // 1. Classes.
  std::vector<std::string> chosen;
  if (!o.classes.empty()) {
    for (const auto& c : o.classes) {
      if (scanned.index_of(c) < 0) {
        std::string known;
        for (const auto& n : scanned.names) known += (known.empty() ? "" : ", ") + fmt::format("'{}'", n);
        throw UserError(
            ExitCode::kDataError,
            fmt::format("--classes names '{}', which has no usable images in the scan; classes found: {}", c, known));
      }
      if (std::find(chosen.begin(), chosen.end(), c) == chosen.end()) chosen.push_back(c);
    }
  } else {
    chosen = scanned.names;
  }
  auto count_of = [&](const std::string& c) { return scanned.counts[scanned.index_of(c)]; };
  std::vector<std::string> kept;
  for (const auto& c : chosen) {
    if (count_of(c) < o.min_per_class) {
      note(fmt::format("class '{}' dropped: {} images < subsample.min_per_class {}", c, count_of(c), o.min_per_class));
    } else {
      kept.push_back(c);
    }
  }
  if (o.top_k > 0 && static_cast<std::int64_t>(kept.size()) > o.top_k) {
    std::stable_sort(kept.begin(), kept.end(), [&](const auto& a, const auto& b) { return count_of(a) > count_of(b); });
    kept.resize(static_cast<std::size_t>(o.top_k));
  }
  std::sort(kept.begin(), kept.end());
  if (kept.empty())
    throw UserError(ExitCode::kDataError,
                    "no class is left after subsampling; lower --min-per-class or check --classes");
  classes = ClassList{};
  classes.names = kept;
  classes.counts.assign(kept.size(), 0);

  // 2. Duplicate groups: identical files stay together, across classes too.
  std::map<std::string, std::vector<std::size_t>> groups;  // hash -> rows in index
  for (std::size_t i = 0; i < index.size(); ++i) {
    if (classes.index_of(index[i].class_name) >= 0) groups[index[i].hash].push_back(i);
  }
  std::map<std::string, int> group_split;  // hash -> split
  std::vector<ImageRecord> out;
  for (std::size_t ci = 0; ci < classes.names.size(); ++ci) {
    const auto& cls = classes.names[ci];
    // Groups with a member in this class, in a seeded order that depends only on this class.
    std::vector<std::string> hashes;
    std::set<std::string> seen;
    for (std::size_t i = 0; i < index.size(); ++i) {
      if (index[i].class_name == cls && seen.insert(index[i].hash).second) hashes.push_back(index[i].hash);
    }
    Rng rng(seed, "subsample/" + cls);
    rng.shuffle(hashes);
    auto members_here = [&](const std::string& h) {
      std::int64_t n = 0;
      for (auto i : groups[h]) n += index[i].class_name == cls;
      return n;
    };
    // Cap.
    if (o.max_per_class > 0) {
      std::vector<std::string> capped;
      std::int64_t total = 0;
      for (const auto& h : hashes) {
        if (total >= o.max_per_class) break;
        capped.push_back(h);
        total += members_here(h);
      }
      hashes.swap(capped);
    }
    std::int64_t n = 0;
    for (const auto& h : hashes) n += members_here(h);
    // Targets: rounded shares, at least one each when the class is big enough to afford it.
    auto target = [&](double f) {
      auto t = static_cast<std::int64_t>(std::llround(f * static_cast<double>(n)));
      if (f > 0 && t == 0 && n >= 3) t = 1;
      return t;
    };
    std::int64_t want[3] = {0, target(o.val_fraction), target(o.test_fraction)};
    std::int64_t have[3] = {0, 0, 0};
    // Groups already placed by an earlier class count towards their split.
    for (const auto& h : hashes) {
      if (auto it = group_split.find(h); it != group_split.end()) have[it->second] += members_here(h);
    }
    for (const auto& h : hashes) {
      if (group_split.count(h)) continue;
      const auto m = members_here(h);
      int s = kTrain;
      if (have[kTest] + m <= want[kTest])
        s = kTest;
      else if (have[kVal] + m <= want[kVal])
        s = kVal;
      group_split[h] = s;
      have[s] += m;
    }
    if (have[kTrain] == 0) {
      throw UserError(
          ExitCode::kDataError,
          fmt::format("class '{}' has {} images, too few to keep any for training after the val/test split; "
                      "add images, lower the fractions or drop the class",
                      cls, n));
    }
    std::vector<ImageRecord> rows;
    for (const auto& h : hashes) {
      for (auto i : groups[h]) {
        if (index[i].class_name != cls) continue;
        ImageRecord r = index[i];
        r.label = static_cast<int>(ci);
        r.split = kSplitNames[group_split[h]];
        rows.push_back(std::move(r));
      }
    }
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
    classes.counts[ci] = static_cast<std::int64_t>(rows.size());
    for (auto& r : rows) out.push_back(std::move(r));
  }
  return out;
}

namespace {

class SubsampleStage final : public Stage {
 public:
  std::string name() const override { return "subsample"; }
  std::string summary() const override { return "choose classes and split train/val/test"; }
  std::vector<std::string> option_scopes() const override { return {"subsample", "seed"}; }
  std::vector<std::string> inputs(const Context&) const override {
    return {work_file::kScanIndex, work_file::kScanClasses};
  }
  std::vector<std::string> outputs(const Context&) const override {
    return {work_file::kSubsampleManifest, work_file::kSubsampleManifestCsv, work_file::kSubsampleClasses};
  }

  void run(Context& ctx) override {
    const auto o = ctx.options<SubsampleOptions>();
    const auto index = read_records_jsonl(ctx.path(work_file::kScanIndex));
    const auto scanned = read_class_list(ctx.path(work_file::kScanClasses));
    ClassList classes;
    std::vector<std::string> notes;
    const auto rows =
        select_and_split(index, scanned, o, static_cast<std::uint64_t>(ctx.global().seed), classes, &notes);
    for (const auto& n : notes) ctx.report().info(n);
    const auto dir = ctx.dir("subsample");
    ensure_directory(dir);
    write_records_jsonl(ctx.path(work_file::kSubsampleManifest), rows);
    write_records_csv(ctx.path(work_file::kSubsampleManifestCsv), rows, true);
    write_class_list(ctx.path(work_file::kSubsampleClasses), classes);

    std::string table = fmt::format("{:<28} {:>5} {:>7} {:>6} {:>6}\n", "class", "label", "train", "val", "test");
    std::int64_t totals[3] = {0, 0, 0};
    for (std::size_t ci = 0; ci < classes.names.size(); ++ci) {
      std::int64_t n[3] = {0, 0, 0};
      for (const auto& r : rows) {
        if (r.label == static_cast<int>(ci)) ++n[r.split == "train" ? 0 : r.split == "val" ? 1 : 2];
      }
      for (int s = 0; s < 3; ++s) totals[s] += n[s];
      table += fmt::format("{:<28} {:>5} {:>7} {:>6} {:>6}\n", classes.names[ci], ci, n[0], n[1], n[2]);
    }
    table +=
        fmt::format("{:<28} {:>5} {:>7} {:>6} {:>6}\n", "total", classes.names.size(), totals[0], totals[1], totals[2]);
    ctx.report().print(table);
  }
};

}  // namespace

std::unique_ptr<Stage> make_subsample_stage() { return std::make_unique<SubsampleStage>(); }

}  // namespace augment
