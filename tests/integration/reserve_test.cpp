// Reserve workers, with real agents: idle under light load, engaged under heavy load, released
// after their cooldown. The waits stretch with DISPATCH_TEST_TIME_SCALE (slower sanitizer builds).
#include <catch2/catch.hpp>

#include "tests/integration/harness.hpp"
#include "tests/support/time_scale.hpp"

using namespace dispatch;
using namespace dispatch::testing;

namespace {

protocol::submit sleeps(int count, int ms) {
  protocol::submit s;
  for (int i = 0; i < count; ++i) {
    protocol::task_spec t;
    t.project = "p";
    t.type = "sleep";
    t.payload = std::to_string(ms);
    s.tasks.push_back(std::move(t));
  }
  return s;
}

}  // namespace

TEST_CASE("a reserve worker stays idle under light load and works under heavy load") {
  dispatcher_process d({{"--scale-interval", "200ms", "--reserve-cooldown", "1s"}});
  auto active = start_agent(d, "active-1", {"--capacity", "2"});
  auto reserve = start_agent(d, "reserve-1", {"--capacity", "2", "--pool", "reserve"});
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 2; }, scaled(10s)));
  wire_client producer(d.work_endpoint());

  SECTION("light load: one task at a time never engages the reserve") {
    for (int i = 0; i < 6; ++i) {
      expect<protocol::submitted>(producer.call(sleeps(1, 50)));
      REQUIRE(wait_until([&] { return d.stats().tasks.at("completed") == std::uint64_t(i + 1); },
                         scaled(10s)));
    }
    // Longer than several scale intervals have passed with tasks flowing.
    const auto st = d.stats();
    CHECK(st.reserve_engagements == 0);
    REQUIRE(find_worker(st, "reserve-1"));
    CHECK(find_worker(st, "reserve-1")->state == "standby");
    CHECK(find_worker(st, "reserve-1")->completed == 0);
    CHECK(find_worker(st, "active-1")->completed == 6);
  }

  SECTION("heavy load engages the reserve, and it is released after the cooldown") {
    expect<protocol::submitted>(producer.call(sleeps(80, 50)));
    REQUIRE(wait_until([&] { return d.stats().tasks.at("completed") == 80; }, scaled(60s)));
    auto st = d.stats();
    CHECK(st.reserve_engagements >= 1);
    REQUIRE(find_worker(st, "reserve-1"));
    CHECK(find_worker(st, "reserve-1")->completed > 0);
    CHECK(find_worker(st, "active-1")->completed > 0);
    CHECK(wait_until(
        [&] {
          st = d.stats();
          return st.reserve_releases >= 1 && find_worker(st, "reserve-1")->state == "standby";
        },
        scaled(10s)));
  }
}
