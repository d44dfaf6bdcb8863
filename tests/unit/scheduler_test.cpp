#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dispatcher/policy/scheduler.hpp"

using namespace dispatch;
using namespace dispatch::policy;

namespace {

queued_task make_task(task_id id, std::string project = "p", std::int32_t priority = 0,
                      std::vector<std::string> tags = {}, std::string type = "t") {
  return queued_task{id, std::move(project), std::move(type), priority, std::move(tags)};
}

worker_spec make_worker(std::string id, std::uint32_t capacity = 1,
                        std::vector<std::string> tags = {},
                        worker_pool pool = worker_pool::active,
                        std::vector<std::string> types = {"t"}) {
  return worker_spec{std::move(id), std::move(types), std::move(tags), capacity, pool};
}

worker_spec make_reserve(std::string id, std::uint32_t capacity = 1) {
  return make_worker(std::move(id), capacity, {}, worker_pool::reserve);
}

std::vector<assignment> dispatch_now(scheduler& s, clock_ms now = 0) {
  std::vector<assignment> out;
  s.dispatch(now, out);
  return out;
}

std::vector<task_id> ids_of(const std::vector<assignment>& as) {
  std::vector<task_id> ids;
  for (const auto& a : as) ids.push_back(a.task);
  return ids;
}

std::vector<std::pair<task_id, std::string>> pairs_of(const std::vector<assignment>& as) {
  std::vector<std::pair<task_id, std::string>> out;
  for (const auto& a : as) out.emplace_back(a.task, std::string(a.worker));
  return out;
}

std::vector<reserve_event> tick_at(scheduler& s, clock_ms now) {
  std::vector<reserve_event> out;
  s.tick(now, out);
  return out;
}

// Dispatches one task at a time through a single capacity-1 worker and returns the order.
std::vector<task_id> drain_one_by_one(scheduler& s, const std::string& worker, clock_ms now = 0) {
  std::vector<task_id> order;
  for (;;) {
    s.offer(worker, 1);
    const auto out = dispatch_now(s, now);
    if (out.empty()) break;
    REQUIRE(out.size() == 1);
    order.push_back(out.front().task);
    s.finish(out.front().task, now);
  }
  return order;
}

worker_state state_of(const scheduler& s, const std::string& id) {
  const auto view = s.worker(id);
  REQUIRE(view.has_value());
  return view->state;
}

}  // namespace

// ---------------------------------------------------------------- ordering

TEST_CASE("higher priority goes first", "[scheduler][order]") {
  scheduler s;
  s.add_worker(make_worker("w", 3), 0);
  s.enqueue(make_task(1, "p", 0));
  s.enqueue(make_task(2, "p", 5));
  s.enqueue(make_task(3, "p", 1));
  s.enqueue(make_task(4, "p", -2));
  s.offer("w", 3);
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{2, 3, 1});
  CHECK(s.queued() == 1);
  CHECK(s.running() == 3);
}

TEST_CASE("FIFO by task id inside one priority, whatever the arrival order",
          "[scheduler][order]") {
  scheduler s;
  s.add_worker(make_worker("w"), 0);
  for (task_id id : {10, 11, 12, 5, 3, 4, 13}) s.enqueue(make_task(id));
  CHECK(drain_one_by_one(s, "w") == std::vector<task_id>{3, 4, 5, 10, 11, 12, 13});
  CHECK(s.queued() == 0);
}

TEST_CASE("priorities across lanes of one project interleave by priority then id",
          "[scheduler][order]") {
  scheduler s;
  s.add_worker(make_worker("w", 1, {"gpu"}, worker_pool::active, {"t", "u"}), 0);
  s.enqueue(make_task(1, "p", 0, {}, "t"));
  s.enqueue(make_task(2, "p", 0, {}, "u"));
  s.enqueue(make_task(3, "p", 2, {"gpu"}, "t"));
  s.enqueue(make_task(4, "p", 0, {"gpu"}, "u"));
  s.enqueue(make_task(5, "p", 2, {}, "u"));
  CHECK(drain_one_by_one(s, "w") == std::vector<task_id>{3, 5, 1, 2, 4});
}

// ---------------------------------------------------------------- worker choice

TEST_CASE("least loaded worker wins, capacity counts, ties go to least recently assigned",
          "[scheduler][load]") {
  scheduler s;
  s.add_worker(make_worker("a", 2), 0);
  s.add_worker(make_worker("b", 4), 0);
  s.offer("a", 2);
  s.offer("b", 4);
  std::vector<std::string> chosen;
  for (task_id id = 1; id <= 5; ++id) {
    s.enqueue(make_task(id));
    const auto out = dispatch_now(s);
    REQUIRE(out.size() == 1);
    chosen.emplace_back(out.front().worker);
  }
  // 0/2 vs 0/4: neither assigned yet, registered first wins -> a (1/2)
  // 1/2 vs 0/4 -> b (1/4); 1/2 vs 1/4 -> b (2/4)
  // 1/2 vs 2/4 tie: a was assigned less recently -> a (2/2, full); then only b is left
  CHECK(chosen == std::vector<std::string>{"a", "b", "b", "a", "b"});
  CHECK(s.worker("a")->running == 2);
  CHECK(s.worker("b")->running == 3);
}

TEST_CASE("at equal load the least recently assigned worker wins, not the first registered",
          "[scheduler][load]") {
  scheduler s;
  s.add_worker(make_worker("a", 2), 0);
  s.add_worker(make_worker("b", 4), 0);
  s.offer("b", 4);
  s.enqueue(make_task(1));
  s.enqueue(make_task(2));
  CHECK(pairs_of(dispatch_now(s)) ==
        std::vector<std::pair<task_id, std::string>>{{1, "b"}, {2, "b"}});
  s.offer("a", 2);
  s.enqueue(make_task(3));
  CHECK(pairs_of(dispatch_now(s)) == std::vector<std::pair<task_id, std::string>>{{3, "a"}});
  s.enqueue(make_task(4));  // a at 1/2 and b at 2/4: b was assigned less recently
  CHECK(pairs_of(dispatch_now(s)) == std::vector<std::pair<task_id, std::string>>{{4, "b"}});
}

TEST_CASE("an idle small worker beats a busier big one until it is full", "[scheduler][load]") {
  scheduler s;
  s.add_worker(make_worker("small", 1), 0);
  s.add_worker(make_worker("big", 4), 0);
  REQUIRE(s.adopt(make_task(100), "big"));  // big at 1/4, small at 0/1
  s.offer("small", 1);
  s.offer("big", 3);
  s.enqueue(make_task(1));
  CHECK(pairs_of(dispatch_now(s)) ==
        std::vector<std::pair<task_id, std::string>>{{1, "small"}});
  s.enqueue(make_task(2));  // small is now 1/1 and full
  CHECK(pairs_of(dispatch_now(s)) == std::vector<std::pair<task_id, std::string>>{{2, "big"}});
}

TEST_CASE("type and tags decide eligibility", "[scheduler][eligibility]") {
  scheduler s;
  s.add_worker(make_worker("plain", 4), 0);
  s.add_worker(make_worker("gpu", 4, {"gpu", "big"}), 0);
  s.offer("plain", 4);
  s.offer("gpu", 4);
  REQUIRE(s.adopt(make_task(100), "gpu"));  // plain is less loaded

  SECTION("tagged task goes to the only worker carrying all its tags") {
    s.enqueue(make_task(1, "p", 0, {"gpu"}));
    CHECK(pairs_of(dispatch_now(s)) == std::vector<std::pair<task_id, std::string>>{{1, "gpu"}});
  }
  SECTION("untagged task goes to the least loaded worker") {
    s.enqueue(make_task(1));
    CHECK(pairs_of(dispatch_now(s)) ==
          std::vector<std::pair<task_id, std::string>>{{1, "plain"}});
  }
  SECTION("a task nobody can take waits without blocking other lanes") {
    s.enqueue(make_task(1, "p", 9, {"gpu", "tpu"}));       // no worker has tpu
    s.enqueue(make_task(2, "p", 9, {}, "other-type"));     // no worker of that type
    s.enqueue(make_task(3, "p", 0));
    s.enqueue(make_task(4, "p", 0, {"big"}));
    const auto out = pairs_of(dispatch_now(s));
    CHECK(out == std::vector<std::pair<task_id, std::string>>{{3, "plain"}, {4, "gpu"}});
    CHECK(s.queued() == 2);
    CHECK(s.queued("p") == 2);

    s.add_worker(make_worker("tpu", 1, {"gpu", "tpu"}), 0);
    s.add_worker(make_worker("other", 1, {}, worker_pool::active, {"other-type"}), 0);
    s.offer("tpu", 1);
    s.offer("other", 1);
    CHECK(pairs_of(dispatch_now(s)) ==
          std::vector<std::pair<task_id, std::string>>{{1, "tpu"}, {2, "other"}});
    CHECK(s.queued() == 0);
  }
}

TEST_CASE("a worker serving several types takes tasks of each", "[scheduler][eligibility]") {
  scheduler s;
  s.add_worker(make_worker("multi", 3, {}, worker_pool::active, {"t", "u"}), 0);
  s.offer("multi", 3);
  s.enqueue(make_task(1, "p", 0, {}, "u"));
  s.enqueue(make_task(2, "p", 0, {}, "t"));
  s.enqueue(make_task(3, "p", 0, {}, "v"));
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{1, 2});
  CHECK(s.worker("multi")->running == 2);
  CHECK(s.worker("multi")->offered == 1);
}

// ---------------------------------------------------------------- offers

TEST_CASE("offers bound what a worker gets", "[scheduler][offer]") {
  scheduler s;
  s.add_worker(make_worker("w", 8), 0);
  for (task_id id = 1; id <= 12; ++id) s.enqueue(make_task(id));

  CHECK(dispatch_now(s).empty());  // no open offer

  s.offer("w", 2);
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{1, 2});
  CHECK(s.worker("w")->offered == 0);
  CHECK(s.worker("w")->running == 2);
  CHECK(dispatch_now(s).empty());

  s.offer("w", 100);  // only the 6 free slots are used
  CHECK(dispatch_now(s).size() == 6);
  CHECK(s.worker("w")->running == 8);
  CHECK(s.worker("w")->offered == 94);
  CHECK(s.queued() == 4);

  s.withdraw("w");
  s.finish(1, 0);
  CHECK(dispatch_now(s).empty());
  s.offer("w", 5);
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{9});
}

// ---------------------------------------------------------------- projects

TEST_CASE("a paused project waits, others go on, resume releases it", "[scheduler][project]") {
  scheduler s;
  s.add_worker(make_worker("w", 10), 0);
  s.configure_project("paused", project_settings{true, 0, 1});
  CHECK(s.settings("paused").paused);
  CHECK_FALSE(s.settings("never-configured").paused);
  s.enqueue(make_task(1, "paused", 5));
  s.enqueue(make_task(2, "paused", 5));
  s.enqueue(make_task(3, "other", 0));
  s.offer("w", 10);
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{3});
  CHECK(s.queued("paused") == 2);

  s.configure_project("paused", project_settings{false, 0, 1});
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{1, 2});
  CHECK(s.queued() == 0);
}

TEST_CASE("max_inflight caps a project until its tasks finish", "[scheduler][project]") {
  scheduler s;
  s.add_worker(make_worker("w", 10), 0);
  s.configure_project("capped", project_settings{false, 2, 1});
  for (task_id id = 1; id <= 5; ++id) s.enqueue(make_task(id, "capped"));
  s.enqueue(make_task(6, "free", -1));
  s.offer("w", 10);
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{1, 2, 6});
  CHECK(s.queued("capped") == 3);

  s.finish(1, 0);
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{3});
  CHECK(dispatch_now(s).empty());

  s.configure_project("capped", project_settings{false, 4, 1});  // raising the cap frees it
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{4, 5});
  CHECK(s.queued() == 0);
}

TEST_CASE("weights share dispatches at equal priority", "[scheduler][fairness]") {
  scheduler s;
  s.add_worker(make_worker("w"), 0);
  s.configure_project("light", project_settings{false, 0, 1});
  s.configure_project("heavy", project_settings{false, 0, 3});
  task_id next = 1;
  std::map<task_id, std::string> project_of;
  for (int i = 0; i < 4000; ++i) {
    for (const char* p : {"light", "heavy"}) {
      project_of[next] = p;
      s.enqueue(make_task(next++, p));
    }
  }
  std::map<std::string, int> count;
  for (int i = 0; i < 4000; ++i) {
    s.offer("w", 1);
    const auto out = dispatch_now(s);
    REQUIRE(out.size() == 1);
    ++count[project_of[out.front().task]];
    s.finish(out.front().task, 0);
  }
  CHECK(count["light"] >= 999);
  CHECK(count["light"] <= 1001);
  CHECK(count["heavy"] == 4000 - count["light"]);
}

TEST_CASE("higher priority beats any weight", "[scheduler][fairness]") {
  scheduler s;
  s.add_worker(make_worker("w"), 0);
  s.configure_project("heavy", project_settings{false, 0, 100});
  for (task_id id = 1; id <= 10; ++id) s.enqueue(make_task(id, "heavy", 0));
  for (task_id id = 11; id <= 15; ++id) s.enqueue(make_task(id, "urgent", 1));
  const auto order = drain_one_by_one(s, "w");
  REQUIRE(order.size() == 15);
  CHECK(std::vector<task_id>(order.begin(), order.begin() + 5) ==
        std::vector<task_id>{11, 12, 13, 14, 15});
}

TEST_CASE("a newly backlogged project does not starve the one that kept working",
          "[scheduler][fairness]") {
  scheduler s;
  s.add_worker(make_worker("w"), 0);
  for (task_id id = 1; id <= 200; ++id) s.enqueue(make_task(id, "busy"));
  for (int i = 0; i < 100; ++i) {
    s.offer("w", 1);
    const auto out = dispatch_now(s);
    REQUIRE(out.size() == 1);
    s.finish(out.front().task, 0);
  }
  for (task_id id = 1001; id <= 1100; ++id) s.enqueue(make_task(id, "late"));
  int busy = 0;
  for (int i = 0; i < 20; ++i) {
    s.offer("w", 1);
    const auto out = dispatch_now(s);
    REQUIRE(out.size() == 1);
    if (out.front().task <= 200) ++busy;
    s.finish(out.front().task, 0);
  }
  CHECK(busy >= 9);
  CHECK(busy <= 11);
}

TEST_CASE("a resumed project does not bank the time it was paused", "[scheduler][fairness]") {
  scheduler s;
  s.add_worker(make_worker("w"), 0);
  for (task_id id = 1; id <= 100; ++id) s.enqueue(make_task(id, "a"));
  s.configure_project("b", project_settings{true, 0, 1});
  for (task_id id = 1001; id <= 1100; ++id) s.enqueue(make_task(id, "b"));
  for (int i = 0; i < 50; ++i) {
    s.offer("w", 1);
    const auto out = dispatch_now(s);
    REQUIRE(out.size() == 1);
    CHECK(out.front().task <= 100);
    s.finish(out.front().task, 0);
  }
  s.configure_project("b", project_settings{false, 0, 1});
  int from_a = 0;
  for (int i = 0; i < 20; ++i) {
    s.offer("w", 1);
    const auto out = dispatch_now(s);
    REQUIRE(out.size() == 1);
    if (out.front().task <= 100) ++from_a;
    s.finish(out.front().task, 0);
  }
  CHECK(from_a >= 9);
  CHECK(from_a <= 11);
}

// ---------------------------------------------------------------- reserve workers

TEST_CASE("reserve stays in standby while an active worker has free capacity",
          "[scheduler][reserve]") {
  scheduler s;
  s.add_worker(make_worker("a", 4), 0);
  s.add_worker(make_reserve("r", 4), 0);
  REQUIRE(s.adopt(make_task(100), "a"));  // 1/4, and no open fetch
  s.offer("r", 4);
  for (task_id id = 1; id <= 10; ++id) s.enqueue(make_task(id));
  for (clock_ms now = 0; now <= 60000; now += 500) {
    CHECK(tick_at(s, now).empty());
    CHECK(dispatch_now(s, now).empty());  // a standby worker never gets tasks
  }
  CHECK(state_of(s, "r") == worker_state::standby);
  CHECK(s.engagements() == 0);
  CHECK(s.queued() == 10);
}

TEST_CASE("nothing is engaged without waiting work", "[scheduler][reserve]") {
  scheduler s;
  s.add_worker(make_worker("a", 1), 0);
  s.add_worker(make_reserve("r"), 0);
  REQUIRE(s.adopt(make_task(100), "a"));  // saturated, but nothing waits
  CHECK(tick_at(s, 0).empty());
  s.configure_project("p", project_settings{true, 0, 1});
  s.enqueue(make_task(1));  // waits, but its project is paused
  CHECK(tick_at(s, 10).empty());
  CHECK(s.engagements() == 0);
}

TEST_CASE("reserve engaged when active workers are saturated and work waits",
          "[scheduler][reserve]") {
  scheduler s({1000, 10000});
  s.add_worker(make_worker("a", 1), 0);
  s.add_worker(make_reserve("r1", 2), 0);
  s.add_worker(make_reserve("r2", 2), 0);
  s.add_worker(make_worker("u", 1, {}, worker_pool::reserve, {"u"}), 0);  // wrong type
  s.offer("a", 1);
  s.offer("r1", 2);
  s.offer("r2", 2);
  for (task_id id = 1; id <= 10; ++id) s.enqueue(make_task(id));
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{1});  // a is now saturated

  const auto first = tick_at(s, 100);  // the first engagement needs no wait
  REQUIRE(first.size() == 1);
  CHECK(first[0].what == reserve_event::kind::engaged);
  CHECK(first[0].worker == "r1");  // registered earliest
  CHECK(first[0].at == 100);
  CHECK(state_of(s, "r1") == worker_state::engaged);
  CHECK(s.worker("r1")->pool == worker_pool::reserve);
  CHECK(pairs_of(dispatch_now(s, 100)) ==
        std::vector<std::pair<task_id, std::string>>{{2, "r1"}, {3, "r1"}});

  CHECK(tick_at(s, 1099).empty());  // one engagement per scale_interval
  CHECK(state_of(s, "r2") == worker_state::standby);
  const auto second = tick_at(s, 1100);
  REQUIRE(second.size() == 1);
  CHECK(second[0].worker == "r2");
  CHECK(tick_at(s, 5000).empty());  // only u is left, and it serves no waiting type
  CHECK(state_of(s, "u") == worker_state::standby);
  CHECK(s.engagements() == 2);
}

TEST_CASE("engaged reserve gets tasks only when no active offer fits", "[scheduler][reserve]") {
  scheduler s;
  s.add_worker(make_worker("a", 4), 0);
  s.add_worker(make_reserve("r", 4), 0);
  s.add_worker(make_worker("full", 1), 0);
  REQUIRE(s.adopt(make_task(100), "full"));
  REQUIRE(s.adopt(make_task(101), "a"));
  REQUIRE(s.adopt(make_task(102), "a"));
  REQUIRE(s.adopt(make_task(103), "a"));  // a at 3/4, saturated only after one more
  s.enqueue(make_task(1));
  REQUIRE(tick_at(s, 0).empty());  // a still has capacity
  s.offer("a", 1);
  CHECK(pairs_of(dispatch_now(s)) == std::vector<std::pair<task_id, std::string>>{{1, "a"}});

  s.enqueue(make_task(2));
  s.enqueue(make_task(3));
  REQUIRE(tick_at(s, 0).size() == 1);  // a and full are saturated
  s.offer("r", 4);
  s.offer("a", 1);  // an offer on a full worker fits nothing
  CHECK(pairs_of(dispatch_now(s)) ==
        std::vector<std::pair<task_id, std::string>>{{2, "r"}, {3, "r"}});

  s.finish(101, 0);  // a has room again (3/4) and is preferred over r (2/4)
  s.enqueue(make_task(4));
  CHECK(pairs_of(dispatch_now(s)) == std::vector<std::pair<task_id, std::string>>{{4, "a"}});
}

TEST_CASE("engaged reserve is released after its cooldown, one per scale_interval",
          "[scheduler][reserve]") {
  scheduler s({1000, 5000});
  s.add_worker(make_worker("a", 1), 0);
  s.add_worker(make_reserve("r1"), 0);
  s.add_worker(make_reserve("r2"), 0);
  s.add_worker(make_reserve("r3"), 0);
  REQUIRE(s.adopt(make_task(100), "a"));
  s.enqueue(make_task(1));
  s.enqueue(make_task(2));
  REQUIRE(tick_at(s, 0).size() == 1);     // r1
  REQUIRE(tick_at(s, 1000).size() == 1);  // r2
  REQUIRE(tick_at(s, 2000).size() == 1);  // r3
  CHECK(s.engagements() == 3);

  // r3 runs a task until 4000, so its idle time starts then.
  s.offer("r3", 1);
  CHECK(pairs_of(dispatch_now(s, 2000)) ==
        std::vector<std::pair<task_id, std::string>>{{1, "r3"}});
  CHECK(s.cancel(make_task(2)));
  s.finish(1, 4000);

  CHECK(tick_at(s, 4999).empty());
  const auto first = tick_at(s, 6000);  // r1 idle 6000 and r2 idle 5000: only one goes
  REQUIRE(first.size() == 1);
  CHECK(first[0].what == reserve_event::kind::released);
  CHECK(first[0].worker == "r1");
  CHECK(first[0].at == 6000);
  CHECK(state_of(s, "r1") == worker_state::standby);
  CHECK(tick_at(s, 6999).empty());
  const auto second = tick_at(s, 7000);
  REQUIRE(second.size() == 1);
  CHECK(second[0].worker == "r2");
  CHECK(tick_at(s, 8999).empty());  // r3 has been idle only 4999
  const auto third = tick_at(s, 9000);
  REQUIRE(third.size() == 1);
  CHECK(third[0].worker == "r3");
  CHECK(s.releases() == 3);

  // Standby order now follows release order: r1 was released least recently.
  s.enqueue(make_task(3));
  const auto again = tick_at(s, 10000);
  REQUIRE(again.size() == 1);
  CHECK(again[0].worker == "r1");
}

TEST_CASE("an engaged reserve worker that is busy is not released", "[scheduler][reserve]") {
  scheduler s({1000, 5000});
  s.add_worker(make_worker("a", 1), 0);
  s.add_worker(make_reserve("r", 2), 0);
  REQUIRE(s.adopt(make_task(100), "a"));
  s.enqueue(make_task(1));
  REQUIRE(tick_at(s, 0).size() == 1);
  s.offer("r", 2);
  REQUIRE(dispatch_now(s).size() == 1);
  CHECK(tick_at(s, 100000).empty());
  CHECK(state_of(s, "r") == worker_state::engaged);
  s.finish(1, 100000);
  CHECK(tick_at(s, 104999).empty());
  CHECK(tick_at(s, 105000).size() == 1);
}

TEST_CASE("set_pool moves workers between active and standby", "[scheduler][reserve]") {
  scheduler s;
  s.add_worker(make_reserve("r", 2), 0);
  s.offer("r", 2);
  s.enqueue(make_task(1));
  CHECK(dispatch_now(s).empty());
  s.set_pool("r", worker_pool::active, 0);
  CHECK(state_of(s, "r") == worker_state::active);
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{1});

  s.set_pool("r", worker_pool::reserve, 0);
  CHECK(state_of(s, "r") == worker_state::standby);
  CHECK(s.worker("r")->running == 1);  // what it runs stays with it
  s.enqueue(make_task(2));
  CHECK(dispatch_now(s).empty());
}

// ---------------------------------------------------------------- workers and tasks

TEST_CASE("remove_worker returns its running tasks and frees their projects",
          "[scheduler][worker]") {
  scheduler s;
  s.configure_project("p", project_settings{false, 2, 1});
  s.add_worker(make_worker("a", 4), 0);
  s.add_worker(make_worker("b", 4), 0);
  for (task_id id = 1; id <= 3; ++id) s.enqueue(make_task(id, "p"));
  s.offer("a", 4);
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{1, 2});
  CHECK(s.remove_worker("a") == std::vector<task_id>{1, 2});
  CHECK_FALSE(s.worker("a").has_value());
  CHECK(s.running() == 0);
  CHECK(s.remove_worker("a").empty());
  s.finish(1, 0);  // unknown by now: ignored

  s.offer("b", 4);
  CHECK(pairs_of(dispatch_now(s)) == std::vector<std::pair<task_id, std::string>>{{3, "b"}});
}

TEST_CASE("add_worker with a known id replaces the registration", "[scheduler][worker]") {
  scheduler s;
  s.add_worker(make_worker("w", 2), 0);
  s.offer("w", 2);
  s.enqueue(make_task(1));
  REQUIRE(dispatch_now(s).size() == 1);
  s.add_worker(make_worker("w", 5, {"gpu"}), 0);
  const auto view = s.worker("w");
  REQUIRE(view.has_value());
  CHECK(view->capacity == 5);
  CHECK(view->running == 0);
  CHECK(view->offered == 0);
  CHECK(s.running() == 0);
  CHECK(s.workers().size() == 1);
  s.offer("w", 1);
  s.enqueue(make_task(2, "p", 0, {"gpu"}));
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{2});
}

TEST_CASE("workers() lists every worker sorted by id", "[scheduler][worker]") {
  scheduler s;
  s.add_worker(make_worker("c"), 0);
  s.add_worker(make_reserve("a"), 0);
  s.add_worker(make_worker("b", 3), 0);
  s.remove_worker("c");
  s.add_worker(make_worker("d"), 0);
  const auto all = s.workers();
  REQUIRE(all.size() == 3);
  CHECK(all[0].id == "a");
  CHECK(all[0].state == worker_state::standby);
  CHECK(all[1].id == "b");
  CHECK(all[1].capacity == 3);
  CHECK(all[2].id == "d");
  CHECK_FALSE(s.worker("c").has_value());
}

TEST_CASE("cancel removes exactly one queued task", "[scheduler][cancel]") {
  scheduler s;
  s.add_worker(make_worker("w"), 0);
  for (task_id id = 1; id <= 6; ++id) s.enqueue(make_task(id));
  s.enqueue(make_task(7, "q", 3, {"x"}));
  CHECK(s.cancel(make_task(3)));
  CHECK(s.queued() == 6);
  CHECK_FALSE(s.cancel(make_task(3)));             // already gone
  CHECK_FALSE(s.cancel(make_task(4, "p", 1)));     // wrong priority: not queued like that
  CHECK_FALSE(s.cancel(make_task(99)));            // never queued
  CHECK_FALSE(s.cancel(make_task(5, "unknown")));  // unknown project
  CHECK_FALSE(s.cancel(make_task(7, "q", 3, {"y"})));
  CHECK(s.cancel(make_task(1)));                   // the head
  CHECK(s.cancel(make_task(7, "q", 3, {"x"})));
  CHECK(s.queued() == 4);
  CHECK(s.queued("p") == 4);
  CHECK(s.queued("q") == 0);

  s.offer("w", 1);
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{2});
  CHECK_FALSE(s.cancel(make_task(2)));  // running, not queued
  s.finish(2, 0);

  s.enqueue(make_task(3));  // a cancelled id may come back
  CHECK(s.queued() == 4);
  CHECK(drain_one_by_one(s, "w") == std::vector<task_id>{3, 4, 5, 6});
  CHECK(s.queued() == 0);
}

TEST_CASE("queue order and counts survive random enqueue, cancel and dispatch",
          "[scheduler][cancel]") {
  scheduler s;
  s.add_worker(make_worker("w", 1000000), 0);
  std::mt19937_64 rng(42);
  std::set<std::pair<std::int32_t, task_id>> model;  // (-priority, id): the expected order
  std::map<task_id, std::int32_t> queued;            // id -> priority
  std::vector<task_id> gone;                         // cancelled or done: may come back
  task_id next = 1;
  for (int step = 0; step < 30000; ++step) {
    const auto roll = rng() % 10;
    if (roll < 5) {
      // Mostly new ids; sometimes one that was cancelled or ran before comes back, out of order.
      task_id id = next;
      if (!gone.empty() && rng() % 4 == 0) {
        const auto at = rng() % gone.size();
        id = gone[at];
        gone[at] = gone.back();
        gone.pop_back();
      } else {
        ++next;
      }
      const auto priority = static_cast<std::int32_t>(rng() % 4);
      s.enqueue(make_task(id, "p", priority));
      model.emplace(-priority, id);
      queued.emplace(id, priority);
    } else if (roll < 8 && !queued.empty()) {
      auto it = queued.begin();
      std::advance(it, static_cast<long>(rng() % queued.size()));
      const auto [id, priority] = *it;
      CHECK_FALSE(s.cancel(make_task(id, "p", priority + 1)));
      CHECK(s.cancel(make_task(id, "p", priority)));
      CHECK_FALSE(s.cancel(make_task(id, "p", priority)));
      model.erase({-priority, id});
      queued.erase(it);
      gone.push_back(id);
    } else if (!model.empty()) {
      s.offer("w", 1);
      const auto out = dispatch_now(s);
      REQUIRE(out.size() == 1);
      const task_id expected = model.begin()->second;
      REQUIRE(out.front().task == expected);
      model.erase(model.begin());
      queued.erase(expected);
      s.finish(expected, 0);
      gone.push_back(expected);
    }
    REQUIRE(s.queued() == model.size());
    if (step % 97 == 0) {
      // upcoming() on one lane is the queue's head, tombstones and out-of-order ids included.
      std::vector<task_id> expected, seen;
      for (auto it = model.begin(); it != model.end() && expected.size() < 25; ++it)
        expected.push_back(it->second);
      s.upcoming(25, 100, seen);
      REQUIRE(seen == expected);
    }
  }
  CHECK(drain_one_by_one(s, "w").size() == model.size());
  CHECK(s.queued() == 0);
}

TEST_CASE("upcoming lists the heads of the most urgent dispatchable lanes",
          "[scheduler][upcoming]") {
  scheduler s;
  for (task_id id = 1; id <= 5; ++id) s.enqueue(make_task(id, "low", 0));
  for (task_id id = 6; id <= 8; ++id) s.enqueue(make_task(id, "high", 5));
  s.enqueue(make_task(9, "high", 5, {"gpu"}));  // another lane of the same project
  s.enqueue(make_task(10, "paused", 9));
  s.configure_project("paused", project_settings{true, 0, 1});
  std::vector<task_id> out{42};  // appended to
  s.upcoming(2, 100, out);
  CHECK(out == std::vector<task_id>{42, 6, 7, 9, 1, 2});
  out.clear();
  s.upcoming(2, 3, out);  // the limit cuts across lanes
  CHECK(out == std::vector<task_id>{6, 7, 9});
  CHECK(s.queued() == 10);  // nothing was taken
}

TEST_CASE("adopted tasks count toward load and in-flight", "[scheduler][adopt]") {
  scheduler s;
  s.add_worker(make_worker("a", 2), 0);
  s.add_worker(make_worker("b", 2), 0);
  CHECK_FALSE(s.adopt(make_task(100), "nobody"));
  REQUIRE(s.adopt(make_task(100), "a"));
  CHECK(s.running() == 1);
  CHECK(s.worker("a")->running == 1);
  s.offer("a", 2);
  s.offer("b", 2);
  s.enqueue(make_task(1));
  CHECK(pairs_of(dispatch_now(s)) == std::vector<std::pair<task_id, std::string>>{{1, "b"}});

  // Beyond capacity: tolerated, and the worker simply gets nothing.
  REQUIRE(s.adopt(make_task(101), "a"));
  REQUIRE(s.adopt(make_task(102), "a"));
  CHECK(s.worker("a")->running == 3);
  s.enqueue(make_task(2));
  s.enqueue(make_task(3));
  CHECK(pairs_of(dispatch_now(s)) == std::vector<std::pair<task_id, std::string>>{{2, "b"}});
  s.finish(100, 0);
  s.finish(101, 0);
  CHECK(pairs_of(dispatch_now(s)) == std::vector<std::pair<task_id, std::string>>{{3, "a"}});

  // In-flight cap counts adopted tasks too.
  s.finish(3, 0);
  s.finish(102, 0);
  s.configure_project("capped", project_settings{false, 1, 1});
  REQUIRE(s.adopt(make_task(200, "capped"), "b"));
  s.enqueue(make_task(4, "capped"));
  s.offer("a", 2);
  CHECK(dispatch_now(s).empty());
  s.finish(200, 0);
  CHECK(ids_of(dispatch_now(s)) == std::vector<task_id>{4});
}
