// The protocol against a real dispatcherd, with the test itself playing worker and producer, so
// that every decision the dispatcher makes can be checked exactly.
#include <catch2/catch.hpp>

#include <thread>

#include "tests/integration/harness.hpp"
#include "tests/support/time_scale.hpp"

using namespace dispatch;
using namespace dispatch::testing;

namespace {

protocol::task_spec spec(std::string project, std::int32_t priority, std::string payload = {},
                         std::string type = "echo") {
  protocol::task_spec s;
  s.project = std::move(project);
  s.type = std::move(type);
  s.priority = priority;
  s.payload = std::move(payload);
  return s;
}

}  // namespace

TEST_CASE("tasks are handed out by priority, FIFO within a priority, and complete") {
  dispatcher_process d;
  wire_client producer(d.work_endpoint());
  wire_client worker(d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1")));

  // Submitted in scrambled priority order; the worker then pulls one job at a time.
  const auto ids = submit(producer, {spec("p", 1, "a"), spec("p", 5, "b"), spec("p", 1, "c"),
                                     spec("p", 9, "d"), spec("p", 5, "e")});
  REQUIRE(ids.size() == 5);
  for (std::size_t i = 1; i < ids.size(); ++i) CHECK(ids[i] > ids[i - 1]);

  std::vector<std::string> order;
  for (int i = 0; i < 5; ++i) {
    auto jobs = fetch(worker, 1);
    REQUIRE(jobs.size() == 1);
    CHECK(jobs[0].attempt == 1);
    order.push_back(jobs[0].payload);
    expect<protocol::ok>(worker.call(protocol::complete{jobs[0].task, jobs[0].attempt, "r-" + jobs[0].payload}));
  }
  CHECK(order == std::vector<std::string>{"d", "b", "e", "a", "c"});

  const auto t = status_of(producer, ids[3]);
  CHECK(t.status == task_status::completed);
  CHECK(t.result == "r-d");
  CHECK(t.worker == "w1");
  CHECK(t.attempts == 1);
  CHECK(t.created_at > 0);
  CHECK(t.assigned_at >= t.created_at);
  CHECK(t.finished_at >= t.assigned_at);

  const auto st = d.stats();
  CHECK(st.tasks.at("completed") == 5);
  CHECK(st.tasks.at("pending") == 0);
  REQUIRE(find_worker(st, "w1"));
  CHECK(find_worker(st, "w1")->completed == 5);
}

TEST_CASE("a fetch is a long poll: answered empty when the wait runs out, at once when work comes") {
  dispatcher_process d;
  wire_client worker(d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1", 4)));

  CHECK(fetch(worker, 4, 200).empty());

  const auto fetch_id = worker.send(protocol::fetch{4, 30000});
  wire_client producer(d.work_endpoint());
  const auto ids = submit(producer, {spec("p", 0, "x"), spec("p", 0, "y")});
  // Well before the 30 s wait: the open fetch is answered as soon as the tasks are stored.
  const auto jobs = expect<protocol::jobs>(worker.wait_reply(fetch_id, 5s)).jobs;
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[0].task == ids[0]);
  CHECK(jobs[1].task == ids[1]);
}

TEST_CASE("long polls run out in the order of their deadlines, not of their arrival") {
  // The dispatcher keeps one timer for the earliest open fetch: a short one arriving after long
  // ones must still end on time, and the long ones only when theirs run out.
  dispatcher_process d;
  wire_client patient(d.work_endpoint());
  wire_client hasty(d.work_endpoint());
  expect<protocol::registered>(patient.call(worker_spec("patient")));
  expect<protocol::registered>(hasty.call(worker_spec("hasty")));

  const auto long_poll = patient.send(protocol::fetch{1, 4000});
  CHECK(expect<protocol::jobs>(hasty.call(protocol::fetch{1, 200}, 2s)).jobs.empty());
  CHECK_FALSE(patient.receive(500ms).has_value());  // still waiting, 3 s to go
  CHECK(expect<protocol::jobs>(patient.wait_reply(long_poll, 6s)).jobs.empty());
}

TEST_CASE("a worker never gets more than it asked for or its capacity") {
  dispatcher_process d;
  wire_client producer(d.work_endpoint());
  std::vector<protocol::task_spec> specs(10, spec("p", 0));
  submit(producer, specs);
  wire_client worker(d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1", 3)));
  CHECK(fetch(worker, 2).size() == 2);
  CHECK(fetch(worker, 5).size() == 1);  // capacity 3, two already held
  CHECK(fetch(worker, 5, 100).empty());
}

TEST_CASE("completions are checked against the holder and the lease") {
  dispatcher_process d;
  wire_client producer(d.work_endpoint());
  wire_client w1(d.work_endpoint());
  wire_client w2(d.work_endpoint());
  expect<protocol::registered>(w1.call(worker_spec("w1")));
  expect<protocol::registered>(w2.call(worker_spec("w2")));
  const auto ids = submit(producer, {spec("p", 0, "x")});
  auto jobs = fetch(w1, 1);
  REQUIRE(jobs.size() == 1);

  CHECK(error_of(w2.call(protocol::complete{ids[0], 1, ""})) == protocol::error_code::not_owner);
  CHECK(error_of(w1.call(protocol::complete{ids[0], 7, ""})) == protocol::error_code::stale_lease);
  CHECK(error_of(w1.call(protocol::complete{999999, 0, ""})) == protocol::error_code::unknown_task);
  wire_client stranger(d.work_endpoint());
  CHECK(error_of(stranger.call(protocol::complete{ids[0], 1, ""})) ==
        protocol::error_code::not_registered);
  CHECK(error_of(stranger.call(protocol::fetch{1, 0})) == protocol::error_code::not_registered);

  expect<protocol::ok>(w1.call(protocol::complete{ids[0], 1, "done"}));
  CHECK(error_of(w1.call(protocol::complete{ids[0], 1, "again"})) ==
        protocol::error_code::invalid_state);
  CHECK(status_of(producer, ids[0]).result == "done");
}

TEST_CASE("a report applies each result as its own complete or fail and lists the refused ones") {
  dispatcher_process d;
  wire_client producer(d.work_endpoint());
  wire_client w1(d.work_endpoint());
  wire_client w2(d.work_endpoint());
  expect<protocol::registered>(w1.call(worker_spec("w1", 8)));
  expect<protocol::registered>(w2.call(worker_spec("w2", 8)));
  auto fatal = spec("p", 9, "fatal");
  fatal.max_attempts = 1;
  const auto ids = submit(producer, {fatal, spec("p", 8, "ok-1"), spec("p", 7, "retry"),
                                     spec("p", 6, "ok-2"), spec("p", 5, "other")});
  auto jobs = fetch(w1, 4);
  REQUIRE(jobs.size() == 4);
  const auto theirs = fetch(w2, 1);
  REQUIRE(theirs.size() == 1);
  CHECK(theirs[0].task == ids[4]);

  protocol::report r;
  r.results = {{ids[0], 1, true, "", "bad input", false},
               {ids[1], 1, false, "done-1", "", true},
               {ids[2], 1, true, "", "busy", true},
               {ids[4], 1, false, "", "", true},  // held by w2
               {ids[3], 5, false, "", "", true},  // stale lease
               {999999, 0, false, "", "", true},  // no such task
               {ids[3], 1, false, "done-2", "", true},
               {ids[3], 1, false, "again", "", true}};  // finished by the result before it
  const auto answer = expect<protocol::reported>(w1.call(r));
  REQUIRE(answer.refused.size() == 4);
  CHECK(answer.refused[0].task == ids[4]);
  CHECK(answer.refused[0].code == protocol::error_code::not_owner);
  CHECK(answer.refused[1].task == ids[3]);
  CHECK(answer.refused[1].code == protocol::error_code::stale_lease);
  CHECK(answer.refused[2].task == 999999);
  CHECK(answer.refused[2].code == protocol::error_code::unknown_task);
  CHECK(answer.refused[3].task == ids[3]);
  CHECK(answer.refused[3].code == protocol::error_code::invalid_state);
  CHECK_FALSE(answer.refused[0].message.empty());

  CHECK(status_of(producer, ids[0]).status == task_status::failed);
  CHECK(status_of(producer, ids[0]).error == "bad input");
  CHECK(status_of(producer, ids[1]).status == task_status::completed);
  CHECK(status_of(producer, ids[1]).result == "done-1");
  const auto retried = status_of(producer, ids[2]);
  CHECK((retried.status == task_status::scheduled || retried.status == task_status::pending));
  CHECK(retried.error == "busy");
  CHECK(status_of(producer, ids[3]).result == "done-2");
  CHECK(status_of(producer, ids[4]).status == task_status::running);
  const auto st = d.stats();
  REQUIRE(find_worker(st, "w1"));
  CHECK(find_worker(st, "w1")->completed == 2);
  CHECK(find_worker(st, "w1")->failed == 2);

  // A report from a connection that never registered is refused as a whole.
  wire_client stranger(d.work_endpoint());
  protocol::report late;
  late.results = {{ids[4], 1, false, "", "", true}};
  CHECK(error_of(stranger.call(late)) == protocol::error_code::not_registered);
  CHECK(status_of(producer, ids[4]).status == task_status::running);
}

TEST_CASE("retryable failures are retried until max_attempts, then the task is dead") {
  dispatcher_process d({{"--retry-base", "50ms"}});
  wire_client producer(d.work_endpoint());
  wire_client worker(d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1")));
  auto s = spec("p", 0);
  s.max_attempts = 2;
  const auto ids = submit(producer, {s});

  for (std::uint32_t attempt = 1; attempt <= 2; ++attempt) {
    auto jobs = fetch(worker, 1);
    REQUIRE(jobs.size() == 1);
    CHECK(jobs[0].task == ids[0]);
    CHECK(jobs[0].attempt == attempt);
    expect<protocol::ok>(worker.call(protocol::fail{ids[0], attempt, "boom " + std::to_string(attempt), true}));
    // Between attempts the task waits out its backoff in the dispatcher.
    if (attempt == 1) CHECK(status_of(producer, ids[0]).status == task_status::scheduled);
  }
  auto t = status_of(producer, ids[0]);
  CHECK(t.status == task_status::dead);
  CHECK(t.attempts == 2);
  CHECK(t.error == "boom 2");

  const auto fatal = submit(producer, {spec("p", -1, "fatal")});
  auto jobs = fetch(worker, 1);
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].task == fatal[0]);
  expect<protocol::ok>(worker.call(protocol::fail{fatal[0], 1, "bad input", false}));
  CHECK(status_of(producer, fatal[0]).status == task_status::failed);
  CHECK(d.stats().tasks.at("dead") == 1);
}

TEST_CASE("cancel ends pending and running tasks, and refuses finished ones") {
  dispatcher_process d;
  wire_client producer(d.work_endpoint());
  wire_client worker(d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1")));
  const auto ids = submit(producer, {spec("p", 5), spec("p", 0)});
  auto jobs = fetch(worker, 1);
  REQUIRE(jobs.size() == 1);
  REQUIRE(jobs[0].task == ids[0]);

  expect<protocol::ok>(producer.call(protocol::cancel{ids[1]}));  // pending
  expect<protocol::ok>(producer.call(protocol::cancel{ids[0]}));  // running
  CHECK(status_of(producer, ids[0]).status == task_status::cancelled);
  CHECK(status_of(producer, ids[1]).status == task_status::cancelled);
  CHECK(error_of(worker.call(protocol::complete{ids[0], 1, ""})) ==
        protocol::error_code::invalid_state);
  CHECK(error_of(producer.call(protocol::cancel{ids[0]})) == protocol::error_code::invalid_state);
  CHECK(error_of(producer.call(protocol::cancel{424242})) == protocol::error_code::unknown_task);
  CHECK(fetch(worker, 1, 100).empty());
}

TEST_CASE("a paused project keeps its tasks until resumed, other projects go on") {
  dispatcher_process d;
  wire_client admin(d.admin_endpoint());
  wire_client producer(d.work_endpoint());
  wire_client worker(d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1", 10)));
  expect<protocol::ok>(admin.call(protocol::pause_project{"slow"}));
  const auto ids = submit(producer, {spec("slow", 9), spec("fast", 0)});

  auto jobs = fetch(worker, 10, 300);
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].task == ids[1]);
  CHECK(fetch(worker, 9, 200).empty());

  expect<protocol::ok>(admin.call(protocol::resume_project{"slow"}));
  jobs = fetch(worker, 9);
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].task == ids[0]);

  const auto projects = expect<protocol::project_list>(admin.call(protocol::list_projects{})).projects;
  REQUIRE(projects.size() == 2);
  CHECK(projects[0].name == "fast");
  CHECK(projects[1].name == "slow");
  CHECK_FALSE(projects[1].paused);
  CHECK(projects[1].counts.at("running") == 1);
}

TEST_CASE("tasks held by a worker that says goodbye go back to the queue") {
  dispatcher_process d;
  wire_client producer(d.work_endpoint());
  wire_client w1(d.work_endpoint());
  expect<protocol::registered>(w1.call(worker_spec("w1", 2)));
  const auto ids = submit(producer, {spec("p", 0), spec("p", 0)});
  REQUIRE(fetch(w1, 2).size() == 2);
  expect<protocol::ok>(w1.call(protocol::goodbye{}));
  CHECK(status_of(producer, ids[0]).status == task_status::pending);

  wire_client w2(d.work_endpoint());
  expect<protocol::registered>(w2.call(worker_spec("w2", 2)));
  auto jobs = fetch(w2, 2);
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[0].attempt == 2);
}

TEST_CASE("a worker that stops sending heartbeats is declared lost and its tasks are requeued") {
  // The window (heartbeat x liveness) leaves a loaded test machine room between a registration
  // and the fetch that follows it, and between the live worker's beats.
  const auto heartbeat = scaled(250ms);
  dispatcher_process d(
      {{"--heartbeat", scaled_arg(250ms), "--liveness", "3", "--retry-base", "50ms"}});
  wire_client producer(d.work_endpoint());
  wire_client silent(d.work_endpoint());
  const auto reg = expect<protocol::registered>(silent.call(worker_spec("silent")));
  CHECK(reg.heartbeat_ms == heartbeat.count());
  CHECK(reg.liveness == 3);
  const auto ids = submit(producer, {spec("p", 0)});
  REQUIRE(fetch(silent, 1).size() == 1);
  // The lost worker's attempt counts as failed; after its short backoff the task waits again.
  CHECK(wait_until([&] { return status_of(producer, ids[0]).status == task_status::pending; },
                   scaled(5s)));
  const auto t = status_of(producer, ids[0]);
  CHECK(t.attempts == 1);
  CHECK(t.error == "worker silent was lost while running it");
  CHECK(find_worker(d.stats(), "silent") == nullptr);

  // A worker that heartbeats stays, over twice the window.
  wire_client alive(d.work_endpoint());
  expect<protocol::registered>(alive.call(worker_spec("alive")));
  const auto until = std::chrono::steady_clock::now() + 6 * heartbeat;
  while (std::chrono::steady_clock::now() < until) {
    expect<protocol::heartbeat_reply>(alive.call(protocol::heartbeat{}));
    std::this_thread::sleep_for(heartbeat / 2);
  }
  CHECK(find_worker(d.stats(), "alive") != nullptr);
}

TEST_CASE("a project's max_inflight caps its running tasks, the cap and weight are stored") {
  dispatcher_process d;
  wire_client admin(d.admin_endpoint());
  wire_client producer(d.work_endpoint());
  wire_client worker(d.work_endpoint());
  protocol::configure_project cap;
  cap.project = "capped";
  cap.max_inflight = 1;
  cap.weight = 3;
  expect<protocol::ok>(admin.call(cap));
  expect<protocol::registered>(worker.call(worker_spec("w1", 5)));
  const auto ids = submit(producer, {spec("capped", 0), spec("capped", 0), spec("free", 0)});

  auto jobs = fetch(worker, 5, 300);
  REQUIRE(jobs.size() == 2);  // one of "capped", the one of "free"
  CHECK(jobs[0].task == ids[0]);
  CHECK(jobs[1].task == ids[2]);
  CHECK(fetch(worker, 3, 200).empty());
  expect<protocol::ok>(worker.call(protocol::complete{ids[0], 1, ""}));
  jobs = fetch(worker, 3);
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].task == ids[1]);

  d.stop();
  d.start();
  const auto projects = expect<protocol::project_list>(admin.call(protocol::list_projects{})).projects;
  REQUIRE(projects.size() == 2);
  CHECK(projects[0].name == "capped");
  CHECK(projects[0].max_inflight == 1);
  CHECK(projects[0].weight == 3);
}

TEST_CASE("only failures count against max_attempts, not requeues that are not the task's fault") {
  dispatcher_process d;
  wire_client producer(d.work_endpoint());
  auto s = spec("p", 0);
  s.max_attempts = 1;
  const auto ids = submit(producer, {s});
  {
    wire_client w1(d.work_endpoint());
    expect<protocol::registered>(w1.call(worker_spec("w1")));
    REQUIRE(fetch(w1, 1).size() == 1);
    expect<protocol::ok>(w1.call(protocol::goodbye{}));
  }
  wire_client w2(d.work_endpoint());
  expect<protocol::registered>(w2.call(worker_spec("w2")));
  auto jobs = fetch(w2, 1);
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].attempt == 2);  // the lease token still moves on
  const auto t = status_of(producer, ids[0]);
  CHECK(t.failures == 0);
  expect<protocol::ok>(w2.call(protocol::complete{ids[0], 2, "done"}));
  CHECK(status_of(producer, ids[0]).status == task_status::completed);
}

TEST_CASE("a removed task frees its idempotency key") {
  dispatcher_process d;
  wire_client admin(d.admin_endpoint());
  wire_client producer(d.work_endpoint());
  auto s = spec("p", 0, "first");
  s.idempotency_key = "K";
  const auto first = submit(producer, {s}).at(0);
  CHECK(submit(producer, {s}).at(0) == first);  // a repeat while the task exists
  expect<protocol::ok>(producer.call(protocol::cancel{first}));
  expect<protocol::ok>(admin.call(protocol::remove_task{first}));
  s.payload = "second";
  const auto second = submit(producer, {s}).at(0);
  CHECK(second != first);
  CHECK(status_of(producer, second).payload == "second");
}

TEST_CASE("stats show recent throughput and queue wait; an operator moves workers between pools") {
  dispatcher_process d;
  wire_client admin(d.admin_endpoint());
  wire_client producer(d.work_endpoint());
  wire_client worker(d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1", 3)));
  const auto ids = submit(producer, {spec("p", 0), spec("p", 0), spec("p", 0)});
  const auto jobs = fetch(worker, 3);
  REQUIRE(jobs.size() == 3);
  for (const auto& j : jobs) expect<protocol::ok>(worker.call(protocol::complete{j.task, j.attempt, ""}));

  auto st = d.stats();
  CHECK(st.completed_last_minute == 3);
  CHECK(st.completed_last_hour == 3);
  CHECK(st.wait_p50_ms <= st.wait_p90_ms);
  CHECK(st.wait_p90_ms <= st.wait_p99_ms);
  REQUIRE(find_worker(st, "w1"));
  CHECK(find_worker(st, "w1")->last_heartbeat > 0);

  expect<protocol::ok>(admin.call(protocol::set_pool{"w1", worker_pool::reserve}));
  st = d.stats();
  CHECK(find_worker(st, "w1")->pool == worker_pool::reserve);
  CHECK(find_worker(st, "w1")->state == "standby");
  // A standby reserve worker gets nothing while an active worker has free capacity (this one
  // simply has not asked yet), even with a task waiting.
  wire_client idle(d.work_endpoint());
  expect<protocol::registered>(idle.call(worker_spec("idle-active", 1)));
  submit(producer, {spec("p", 0)});
  CHECK(fetch(worker, 1, 300).empty());
  expect<protocol::ok>(admin.call(protocol::set_pool{"w1", worker_pool::active}));
  CHECK(fetch(worker, 1).size() == 1);
  CHECK(error_of(admin.call(protocol::set_pool{"nobody", worker_pool::active})) ==
        protocol::error_code::unknown_worker);
}

TEST_CASE("a worker reconnecting with a task taken back meanwhile is told to cancel it and keeps "
          "its drain order") {
  dispatcher_process d;
  wire_client producer(d.work_endpoint());
  wire_client admin(d.admin_endpoint());
  const auto ids = submit(producer, {spec("p", 0)});
  task_id held = 0;
  {
    wire_client first(d.work_endpoint());
    expect<protocol::registered>(first.call(worker_spec("w1")));
    const auto jobs = fetch(first, 1);
    REQUIRE(jobs.size() == 1);
    held = jobs[0].task;
    CHECK(held == ids[0]);
  }
  // While the worker is away, its task is cancelled and the operator drains it.
  expect<protocol::ok>(admin.call(protocol::cancel{held}));
  expect<protocol::ok>(admin.call(protocol::worker_order{"w1", "drain"}));

  wire_client again(d.work_endpoint());  // a new connection: a reconnecting agent
  auto reg = worker_spec("w1");
  reg.running = {held};
  expect<protocol::registered>(again.call(reg));
  const auto hb = expect<protocol::heartbeat_reply>(again.call(protocol::heartbeat{}));
  CHECK(hb.order == "drain");
  REQUIRE(hb.cancel.size() == 1);
  CHECK(hb.cancel[0] == held);
  CHECK(status_of(producer, held).status == task_status::cancelled);
}
