#include <doctest/doctest.h>

#include <sstream>

#include "pipeline/base/csv.h"

using namespace augment;

TEST_SUITE("csv") {
  TEST_CASE("fields with commas - quotes - newlines and non-ASCII survive a round trip") {
    const std::vector<std::string> row = {"plain", "a, b", "say \"hi\"", "two\nlines", "ñandú & co", "", " padded "};
    const auto text = csv::join_row(row);
    CHECK(csv::split_row(text) == row);
    std::istringstream in(text + "\n" + text + "\r\n");
    CHECK(*csv::read_row(in) == row);
    CHECK(*csv::read_row(in) == row);
    CHECK_FALSE(csv::read_row(in).has_value());
  }

  TEST_CASE("unterminated quotes are an error") { CHECK_THROWS(csv::split_row("\"open,field")); }
}
