#include <catch2/catch.hpp>

#include "protocol/duration.hpp"

using dispatch::format_duration;
using dispatch::parse_duration;
using namespace std::chrono_literals;

TEST_CASE("durations parse with a unit, or as milliseconds without one") {
  CHECK(parse_duration("500ms") == 500ms);
  CHECK(parse_duration("10s") == 10s);
  CHECK(parse_duration("2m") == 2min);
  CHECK(parse_duration("1h") == 1h);
  CHECK(parse_duration("0") == 0ms);
  CHECK(parse_duration("250") == 250ms);
}

TEST_CASE("malformed or overflowing durations are refused") {
  for (const char* bad : {"", "s", "5 s", "-1s", "1.5s", "10sec", "ms10", "99999999999999999999h",
                          "9223372036854775807h"}) {
    INFO(bad);
    CHECK_FALSE(parse_duration(bad));
  }
}

TEST_CASE("durations format with the largest exact unit") {
  CHECK(format_duration(0ms) == "0ms");
  CHECK(format_duration(300ms) == "300ms");
  CHECK(format_duration(1500ms) == "1500ms");
  CHECK(format_duration(90s) == "90s");
  CHECK(format_duration(60s) == "1m");
  CHECK(format_duration(2h) == "2h");
}
