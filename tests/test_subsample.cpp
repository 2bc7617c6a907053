#include <doctest/doctest.h>

#include <map>
#include <set>

#include "stages/subsample_stage.h"

using namespace augment;

namespace {

// `n` images per class; every 10th image of class "a" duplicates one of class "b".
std::vector<ImageRecord> make_index(const std::map<std::string, int>& counts, bool cross_duplicates) {
  std::vector<ImageRecord> index;
  for (const auto& [cls, n] : counts) {
    for (int i = 0; i < n; ++i) {
      ImageRecord r;
      r.path = "/d/" + cls + "/" + std::to_string(i) + ".png";
      r.class_name = cls;
      r.hash = cls + std::to_string(i);
      if (i % 5 == 0) r.hash = cls + "-dup" + std::to_string(i / 10);  // pairs of identical files
      if (cross_duplicates && cls == "a" && i % 10 == 3) r.hash = "b" + std::to_string(i);
      index.push_back(r);
    }
  }
  return index;
}

ClassList count(const std::vector<ImageRecord>& index) {
  std::map<std::string, std::int64_t> n;
  for (const auto& r : index) ++n[r.class_name];
  ClassList c;
  for (const auto& [k, v] : n) {
    c.names.push_back(k);
    c.counts.push_back(v);
  }
  return c;
}

}  // namespace

TEST_SUITE("subsample") {
  TEST_CASE("stratified split with the requested shares - reproducible by seed") {
    const auto index = make_index({{"a", 200}, {"b", 100}, {"c", 10}}, false);
    SubsampleOptions o;
    o.val_fraction = 0.1;
    o.test_fraction = 0.2;
    ClassList classes, again, other;
    const auto rows = select_and_split(index, count(index), o, 1, classes);
    const auto rows2 = select_and_split(index, count(index), o, 1, again);
    const auto rows3 = select_and_split(index, count(index), o, 2, other);
    REQUIRE(rows.size() == 310);
    std::map<std::string, std::map<std::string, int>> per;
    for (const auto& r : rows) ++per[r.class_name][r.split];
    CHECK(per["a"]["test"] == doctest::Approx(40).epsilon(0.05));
    CHECK(per["a"]["val"] == doctest::Approx(20).epsilon(0.1));
    CHECK(per["c"]["test"] >= 1);
    CHECK(per["c"]["val"] >= 1);
    bool same = true, differs = false;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      same = same && rows[i].split == rows2[i].split && rows[i].path == rows2[i].path;
      differs = differs || rows[i].split != rows3[i].split;
    }
    CHECK(same);
    CHECK(differs);
    CHECK(classes.names == std::vector<std::string>{"a", "b", "c"});
    for (const auto& r : rows) CHECK(r.label == classes.index_of(r.class_name));
  }

  TEST_CASE("identical files never straddle splits - across classes too") {
    const auto index = make_index({{"a", 120}, {"b", 120}}, true);
    SubsampleOptions o;
    o.val_fraction = 0.2;
    o.test_fraction = 0.2;
    ClassList classes;
    const auto rows = select_and_split(index, count(index), o, 5, classes);
    std::map<std::string, std::set<std::string>> splits_of;
    for (const auto& r : rows) splits_of[r.hash].insert(r.split);
    for (const auto& [hash, splits] : splits_of) CHECK_MESSAGE(splits.size() == 1, hash);
  }

  TEST_CASE("class selection: names - minimum - top-k and cap") {
    const auto index = make_index({{"a", 50}, {"b", 30}, {"c", 8}, {"d", 3}}, false);
    SubsampleOptions o;
    ClassList classes;
    std::vector<std::string> notes;
    o.min_per_class = 5;
    auto rows = select_and_split(index, count(index), o, 0, classes, &notes);
    CHECK(classes.names == std::vector<std::string>{"a", "b", "c"});
    CHECK(notes.size() == 1);
    o.top_k = 2;
    rows = select_and_split(index, count(index), o, 0, classes);
    CHECK(classes.names == std::vector<std::string>{"a", "b"});
    o = SubsampleOptions{};
    o.classes = {"d", "b"};
    o.max_per_class = 10;
    rows = select_and_split(index, count(index), o, 0, classes);
    CHECK(classes.names == std::vector<std::string>{"b", "d"});
    CHECK(classes.counts[0] <= 11);  // a duplicate pair may push one over
    CHECK(classes.counts[1] == 3);
    o.classes = {"nope"};
    CHECK_THROWS_AS(select_and_split(index, count(index), o, 0, classes), UserError);
  }
}
