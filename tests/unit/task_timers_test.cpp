#include <catch2/catch.hpp>

#include "dispatcher/policy/task_timers.hpp"

using dispatch::task_timers;
using kind = task_timers::kind;

TEST_CASE("timers come due in time order, each once") {
  task_timers t;
  t.set(kind::lease, 1, 300);
  t.set(kind::lease, 2, 100);
  t.set(kind::lease, 3, 200);
  CHECK(t.take_due(kind::lease, 50).empty());
  CHECK(t.take_due(kind::lease, 200) == std::vector<dispatch::task_id>{2, 3});
  CHECK(t.take_due(kind::lease, 200).empty());
  CHECK(t.size(kind::lease) == 1);
  CHECK(t.take_due(kind::lease, 1000) == std::vector<dispatch::task_id>{1});
}

TEST_CASE("setting a timer again moves it, clearing removes it") {
  task_timers t;
  t.set(kind::run_at, 7, 100);
  t.set(kind::run_at, 7, 500);  // an extended lease, a rescheduled retry
  CHECK(t.size(kind::run_at) == 1);
  CHECK(t.when(kind::run_at, 7) == 500);
  CHECK(t.take_due(kind::run_at, 400).empty());
  t.clear(kind::run_at, 7);
  CHECK(t.take_due(kind::run_at, 1000).empty());
  CHECK_FALSE(t.when(kind::run_at, 7));
}

TEST_CASE("kinds are independent and clear_all removes every kind") {
  task_timers t;
  t.set(kind::lease, 1, 100);
  t.set(kind::deadline, 1, 100);
  t.set(kind::deadline, 2, 100);
  CHECK(t.take_due(kind::lease, 100) == std::vector<dispatch::task_id>{1});
  t.clear_all(1);
  CHECK(t.take_due(kind::deadline, 100) == std::vector<dispatch::task_id>{2});
  CHECK(t.size(kind::deadline) == 0);
}
