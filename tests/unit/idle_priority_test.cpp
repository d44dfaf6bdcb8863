#include <catch2/catch.hpp>

#include <sched.h>

#include <future>
#include <thread>
#include <vector>

#include "persistence/idle_priority.hpp"

using dispatch::persistence::enter_idle_priority;
using dispatch::persistence::idle_priority_scope;

namespace {

// Runs `body` on a thread of its own (policies are per thread, and Catch's must stay as it is)
// and returns the policies it recorded.
template <class Body>
std::vector<int> on_own_thread(Body body) {
  std::vector<int> seen;
  std::thread([&] { body(seen); }).join();
  return seen;
}

}  // namespace

TEST_CASE("a thread moved to idle priority stays there") {
  const auto seen = on_own_thread([](std::vector<int>& s) {
    s.push_back(sched_getscheduler(0));
    enter_idle_priority();
    s.push_back(sched_getscheduler(0));
  });
  CHECK(seen == std::vector<int>{SCHED_OTHER, SCHED_IDLE});
}

TEST_CASE("an idle priority scope gives the thread its policy back") {
  const auto seen = on_own_thread([](std::vector<int>& s) {
    {
      const idle_priority_scope background;
      s.push_back(sched_getscheduler(0));
    }
    s.push_back(sched_getscheduler(0));
    sched_param batch{};
    sched_setscheduler(0, SCHED_BATCH, &batch);
    {
      const idle_priority_scope background;
      s.push_back(sched_getscheduler(0));
    }
    s.push_back(sched_getscheduler(0));
  });
  CHECK(seen == std::vector<int>{SCHED_IDLE, SCHED_OTHER, SCHED_IDLE, SCHED_BATCH});
}

TEST_CASE("an idle priority scope leaves the other threads alone") {
  std::promise<void> entered, leave;
  std::thread background([&] {
    const idle_priority_scope scope;
    entered.set_value();
    leave.get_future().wait();
  });
  entered.get_future().wait();
  const int here = sched_getscheduler(0);
  leave.set_value();
  background.join();
  CHECK(here == SCHED_OTHER);
}
