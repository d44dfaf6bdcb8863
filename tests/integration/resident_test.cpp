// Pending tasks past --resident-tasks keep only their id in the daemon's memory and are read back
// from the store when they are needed: these tests check that nothing about them changes for
// producers and workers (payload, priority order, status, cancel, deadline, restart).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include "tests/integration/harness.hpp"
#include "tests/support/prometheus_scrape.hpp"
#include "protocol/wall_clock.hpp"

using namespace dispatch;
using namespace dispatch::testing;

namespace {

constexpr int task_count = 40;
constexpr int resident = 5;

protocol::task_spec numbered_task(int i) {
  auto s = echo_task("res", "payload-" + std::to_string(i));
  s.priority = i % 4;
  s.title = "task " + std::to_string(i);
  return s;
}

// What the daemon says it keeps as ids only (dispatch_parked_tasks, updated on its tick); -1 when
// the scrape has no such series.
double parked_tasks(int metrics_port) {
  for (const auto& s : parse_exposition(http_get(metrics_port, "/metrics").body))
    if (s.name == "dispatch_parked_tasks") return s.value;
  return -1;
}

// The order a single worker should get them in: priority first (higher first), then id.
std::vector<task_id> dispatch_order(const std::vector<task_id>& ids,
                                    const std::map<task_id, int>& priority_of) {
  std::vector<task_id> order = ids;
  std::stable_sort(order.begin(), order.end(), [&](task_id a, task_id b) {
    const int pa = priority_of.at(a), pb = priority_of.at(b);
    return pa != pb ? pa > pb : a < b;
  });
  return order;
}

}  // namespace

TEST_CASE("pending tasks past --resident-tasks keep their payload, order, status and cancel, "
          "across a restart") {
  const int metrics_port = free_ports(1)[0];
  dispatcher_options options;
  options.extra_args = {"--resident-tasks", std::to_string(resident), "--metrics-address",
                        "127.0.0.1:" + std::to_string(metrics_port)};
  dispatcher_process d(options);
  const auto parked_becomes = [&](double n) {
    return wait_until([&] { return parked_tasks(metrics_port) == n; }, 5s);
  };
  wire_client producer(d.work_endpoint());

  std::vector<protocol::task_spec> specs;
  for (int i = 0; i < task_count; ++i) specs.push_back(numbered_task(i));
  // One more, whose deadline passes while it waits: marking it overdue needs its record.
  auto late = echo_task("res", "late");
  late.priority = -1;
  late.deadline = wall_now() + 300;
  specs.push_back(late);
  const auto ids = submit(producer, specs);
  REQUIRE(ids.size() == task_count + 1);
  const task_id late_id = ids.back();
  // The first `resident` stay whole, the rest are parked.
  CHECK(parked_becomes(task_count + 1 - resident));

  // The last ones are beyond the bound: asked for, they are whole.
  const auto parked = status_of(producer, ids[task_count - 1]);
  CHECK(parked.status == task_status::pending);
  CHECK(parked.payload == "payload-" + std::to_string(task_count - 1));
  CHECK(parked.title == "task " + std::to_string(task_count - 1));

  // Cancelling one far past the bound works as for any pending task.
  const task_id cancelled = ids[task_count - 2];
  expect<protocol::ok>(producer.call(protocol::cancel{cancelled}));
  CHECK(status_of(producer, cancelled).status == task_status::cancelled);

  REQUIRE(wait_until([&] { return status_of(producer, late_id).overdue; }, 5s));
  // Both were read back to change them: the cancelled one is gone, the late one whole again.
  CHECK(parked_becomes(task_count + 1 - resident - 2));

  // A restart recovers them all, parking again what is past the bound.
  d.stop();
  d.start();
  // Recovered: the first `resident` pending tasks whole, the rest (the late one too) parked.
  CHECK(parked_becomes(task_count - resident));
  wire_client worker(d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1", task_count + 1)));

  std::map<task_id, int> priority_of;
  std::vector<task_id> expected;
  for (int i = 0; i < task_count; ++i) {
    if (ids[i] == cancelled) continue;
    priority_of[ids[i]] = i % 4;
    expected.push_back(ids[i]);
  }
  priority_of[late_id] = -1;
  expected.push_back(late_id);
  expected = dispatch_order(expected, priority_of);

  // Fetches of up to 8: one dispatch pass then reads several parked tasks back in one lookup.
  std::vector<task_id> handed;
  while (handed.size() < expected.size()) {
    const auto jobs = fetch(worker, 8);
    REQUIRE(!jobs.empty());
    for (const auto& job : jobs) {
      const int i = static_cast<int>(std::find(ids.begin(), ids.end(), job.task) - ids.begin());
      CHECK(job.payload == (job.task == late_id ? "late" : "payload-" + std::to_string(i)));
      CHECK(job.priority == priority_of.at(job.task));
      handed.push_back(job.task);
      expect<protocol::ok>(worker.call(protocol::complete{job.task, job.attempt, "ok"}));
    }
    // The first pass had to read its tasks back itself; then the daemon reads ahead the ones
    // it will hand out next (all that are left here), before any worker asks for them.
    if (handed.size() == jobs.size()) CHECK(parked_becomes(0));
  }
  CHECK(handed == expected);
  CHECK(fetch(worker, 1, 200).empty());  // the cancelled one never comes
  CHECK(parked_becomes(0));

  const auto done = status_of(producer, ids[task_count - 1]);
  CHECK(done.status == task_status::completed);
  CHECK(done.payload == "payload-" + std::to_string(task_count - 1));
  CHECK(status_of(producer, late_id).overdue);
  std::printf("resident: %d tasks with %d resident, %zu handed in order after a restart\n",
              task_count + 1, resident, handed.size());
}
