// Real worker-agent processes work through real batches.
#include <catch2/catch.hpp>

#include <csignal>

#include <algorithm>

#include "tests/integration/harness.hpp"

using namespace dispatch;
using namespace dispatch::testing;

namespace {

protocol::task_spec sleep_task(std::string project, std::int32_t priority, int ms) {
  protocol::task_spec s;
  s.project = std::move(project);
  s.type = "sleep";
  s.priority = priority;
  s.payload = std::to_string(ms);
  return s;
}

std::uint64_t finished(const protocol::stats& s) {
  return s.tasks.at("completed") + s.tasks.at("failed") + s.tasks.at("dead") +
         s.tasks.at("cancelled");
}

}  // namespace

TEST_CASE("a mixed batch runs to completion on real agents, balanced by load") {
  dispatcher_process d;
  auto a1 = start_agent(d, "agent-1", {"--capacity", "4"});
  auto a2 = start_agent(d, "agent-2", {"--capacity", "4"});
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 2; }, 10s));

  wire_client producer(d.work_endpoint());
  constexpr int total = 600;
  const char* projects[] = {"web", "reports", "ml"};
  for (int batch = 0; batch < 3; ++batch) {
    protocol::submit s;
    for (int i = 0; i < total / 3; ++i)
      s.tasks.push_back(sleep_task(projects[(batch * total / 3 + i) % 3], i % 5, 2));
    REQUIRE(expect<protocol::submitted>(producer.call(std::move(s))).ids.size() == total / 3);
  }
  REQUIRE(wait_until([&] { return finished(d.stats()) == total; }, 90s));

  const auto st = d.stats();
  CHECK(st.tasks.at("completed") == total);
  CHECK(st.tasks.at("pending") == 0);
  CHECK(st.tasks.at("running") == 0);
  const auto* w1 = find_worker(st, "agent-1");
  const auto* w2 = find_worker(st, "agent-2");
  REQUIRE(w1);
  REQUIRE(w2);
  CHECK(w1->completed + w2->completed == total);
  // Equal capacity, least-load choice: neither agent may be starved.
  CHECK(std::min(w1->completed, w2->completed) >= total / 4);
  REQUIRE(st.projects.size() == 3);
  for (const auto& p : st.projects) CHECK(p.counts.at("completed") == total / 3);
}

TEST_CASE("a single agent receives the backlog in priority order, FIFO within a priority") {
  dispatcher_process d;
  wire_client admin(d.admin_endpoint());
  expect<protocol::ok>(admin.call(protocol::pause_project{"p"}));
  wire_client producer(d.work_endpoint());
  protocol::submit s;
  for (int i = 0; i < 30; ++i) s.tasks.push_back(sleep_task("p", (i * 7) % 4, 5));
  const auto ids = expect<protocol::submitted>(producer.call(std::move(s))).ids;
  auto agent = start_agent(d, "solo", {"--capacity", "1"});
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 1; }, 10s));
  expect<protocol::ok>(admin.call(protocol::resume_project{"p"}));
  REQUIRE(wait_until([&] { return finished(d.stats()) == ids.size(); }, 30s));

  protocol::list_tasks q;
  q.limit = 100;
  auto tasks = expect<protocol::task_list>(admin.call(q)).tasks;
  REQUIRE(tasks.size() == ids.size());
  // Capacity 1 and 5 ms per task: assignment times are strictly ordered.
  std::sort(tasks.begin(), tasks.end(),
            [](const task& a, const task& b) { return a.assigned_at < b.assigned_at; });
  for (std::size_t i = 1; i < tasks.size(); ++i) {
    INFO("task " << tasks[i].id << " priority " << tasks[i].priority << " after task "
                 << tasks[i - 1].id << " priority " << tasks[i - 1].priority);
    CHECK(tasks[i].assigned_at > tasks[i - 1].assigned_at);
    CHECK(tasks[i - 1].priority >= tasks[i].priority);
    if (tasks[i - 1].priority == tasks[i].priority) CHECK(tasks[i - 1].id < tasks[i].id);
  }
}

TEST_CASE("an agent stopped with SIGTERM finishes its running jobs before leaving") {
  dispatcher_process d;
  auto agent = start_agent(d, "leaving", {"--capacity", "2"});
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 1; }, 10s));
  wire_client producer(d.work_endpoint());
  const auto ids = expect<protocol::submitted>(
                       producer.call(protocol::submit{{sleep_task("p", 0, 800), sleep_task("p", 0, 800)}}))
                       .ids;
  REQUIRE(wait_until([&] { return d.stats().tasks.at("running") == 2; }, 10s));
  agent->signal(SIGTERM);
  REQUIRE(agent->wait(20s) == 0);
  const auto st = d.stats();
  CHECK(st.tasks.at("completed") == 2);
  CHECK(st.workers.empty());
}
