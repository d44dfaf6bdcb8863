// Stopping and crashing dispatcherd loses no acknowledged task.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>

#include "persistence/task_store.hpp"
#include "tests/integration/harness.hpp"
#include "tests/support/thread_cpus.hpp"
#include "tests/support/time_scale.hpp"

using namespace dispatch;
using namespace dispatch::testing;

namespace {

protocol::submit echoes(int count, const std::string& project = "p") {
  protocol::submit s;
  for (int i = 0; i < count; ++i) {
    protocol::task_spec t;
    t.project = project;
    t.type = "echo";
    t.priority = i % 3;
    t.payload = "payload-" + std::to_string(i);
    s.tasks.push_back(std::move(t));
  }
  return s;
}

}  // namespace

TEST_CASE("every pending task survives a restart and a kill -9, then runs") {
  const int signal = GENERATE(SIGTERM, SIGKILL);
  dispatcher_process d;
  std::vector<task_id> ids;
  {
    wire_client producer(d.work_endpoint());
    for (int batch = 0; batch < 5; ++batch) {
      auto got = expect<protocol::submitted>(producer.call(echoes(100))).ids;
      ids.insert(ids.end(), got.begin(), got.end());
    }
  }
  d.stop(signal);
  d.start();

  wire_client producer(d.work_endpoint());
  CHECK(d.stats().tasks.at("pending") == ids.size());
  const auto t = status_of(producer, ids[123]);
  CHECK(t.status == task_status::pending);
  CHECK(t.payload == "payload-23");
  // Ids continue after the ones handed out before the restart.
  const auto next = expect<protocol::submitted>(producer.call(echoes(1))).ids;
  CHECK(next.at(0) > ids.back());

  auto agent = start_agent(d, "after-restart", {"--capacity", "8"});
  REQUIRE(wait_until([&] { return d.stats().tasks.at("completed") == ids.size() + 1; }, 60s));
  CHECK(status_of(producer, ids[123]).result == "payload-23");
}

TEST_CASE("after a restart a re-registering worker keeps the tasks it reports, others are requeued") {
  dispatcher_process d({{"--recovery-grace", "1s"}});
  wire_client producer(d.work_endpoint());
  const auto ids = expect<protocol::submitted>(producer.call(echoes(2))).ids;
  protocol::register_worker reg;
  reg.worker = "w1";
  reg.types = {"echo"};
  reg.capacity = 2;
  {
    wire_client worker(d.work_endpoint());
    expect<protocol::registered>(worker.call(reg));
    REQUIRE(expect<protocol::jobs>(worker.call(protocol::fetch{2, 2000})).jobs.size() == 2);
    // The assignment is written in the background; wait until the store has it.
    REQUIRE(wait_until([&] { return d.stats().tasks.at("running") == 2; }, 5s));
  }
  d.stop();
  d.start();

  wire_client worker(d.work_endpoint());
  reg.running = {ids[0]};
  expect<protocol::registered>(worker.call(reg));
  REQUIRE(wait_until([&] { return status_of(worker, ids[1]).status == task_status::pending; }, 5s));
  const auto kept = status_of(worker, ids[0]);
  CHECK(kept.status == task_status::running);
  CHECK(kept.worker == "w1");
  expect<protocol::ok>(worker.call(protocol::complete{ids[0], kept.attempts, "kept"}));
  CHECK(status_of(worker, ids[0]).status == task_status::completed);
}

TEST_CASE("a worker agent reconnects after the dispatcher restarts and goes on working") {
  dispatcher_process d({{"--heartbeat", scaled_arg(200ms)}});
  auto agent = start_agent(d, "steady", {"--capacity", "2"});
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 1; }, 10s));
  {
    wire_client producer(d.work_endpoint());
    expect<protocol::submitted>(producer.call(echoes(10)));
    REQUIRE(wait_until([&] { return d.stats().tasks.at("completed") == 10; }, 20s));
  }
  d.stop();
  d.start();
  // The agent notices the silence, reconnects with backoff and registers again by itself.
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 1; }, 20s));
  wire_client producer(d.work_endpoint());
  expect<protocol::submitted>(producer.call(echoes(10)));
  REQUIRE(wait_until([&] { return d.stats().tasks.at("completed") == 20; }, 20s));
  CHECK(find_worker(d.stats(), "steady")->completed == 10);
  CHECK(agent->running());
}

TEST_CASE("a task submitted after a restart is never created before the stored ones") {
  // The store's created range search needs created_at in id order. A previous run whose clock
  // was an hour ahead left a task created "in the future": the next one must not come before.
  dispatcher_process d;
  d.stop();
  const auto ahead =
      std::chrono::duration_cast<std::chrono::milliseconds>(
          (std::chrono::system_clock::now() + std::chrono::hours(1)).time_since_epoch())
          .count();
  {
    std::unique_ptr<persistence::task_store> store;
    REQUIRE(persistence::task_store::open({d.data_dir(), persistence::durability::wal, {}}, store)
                .is_ok());
    task t;
    t.id = 1;
    t.project = "p";
    t.type = "echo";
    t.status = task_status::pending;
    t.created_at = ahead;
    persistence::write_batch b;
    b.put_task(t, std::nullopt);
    b.set_last_id(1);
    REQUIRE(store->apply(b).is_ok());
  }
  d.start();
  wire_client producer(d.work_endpoint());
  const auto ids = expect<protocol::submitted>(producer.call(echoes(2))).ids;
  REQUIRE(ids == std::vector<task_id>{2, 3});
  CHECK(status_of(producer, 1).created_at == ahead);
  CHECK(status_of(producer, 2).created_at == ahead);
  CHECK(status_of(producer, 3).created_at == ahead);
}

TEST_CASE("with --storage-cpus the store's threads stay on those CPUs and tasks still flow") {
  const auto storage = std::to_string(allowed_cpus().back());
  dispatcher_process d({{"--storage-cpus", storage}});
  wire_client producer(d.work_endpoint());
  const auto ids = expect<protocol::submitted>(producer.call(echoes(20))).ids;
  auto agent = start_agent(d, "pinned", {"--capacity", "4"});
  REQUIRE(wait_until([&] { return d.stats().tasks.at("completed") == ids.size(); }, 60s));
  CHECK(status_of(producer, ids[7]).result == "payload-7");

  const auto threads = thread_cpus(d.process().pid());
  // The detached actors are CAF's "caf.actor" threads: persistence, store reader, notifier.
  const auto [first, end] = threads.equal_range("caf.actor");
  int pinned = 0;
  for (auto it = first; it != end; ++it) pinned += it->second.cpus == storage;
  CHECK(pinned >= 3);
  // RocksDB's flush and compaction threads, on those CPUs at idle priority before their first
  // job (20 tasks make none): a flush does work before its listeners are called.
  for (const char* pool : {"rocksdb:high", "rocksdb:low"}) {
    INFO(pool);
    const auto [pool_first, pool_end] = threads.equal_range(pool);
    REQUIRE(pool_first != pool_end);
    for (auto it = pool_first; it != pool_end; ++it) {
      CHECK(it->second.cpus == storage);
      CHECK(it->second.policy == SCHED_IDLE);
    }
  }
  // The request path (ZeroMQ's I/O thread, the actor scheduler) is left to the kernel: it may
  // run on every CPU the daemon's main thread may.
  const auto main_cpus = threads.find("dispatcherd")->second.cpus;
  if (allowed_cpus().size() > 1) CHECK(main_cpus != storage);  // else nothing above tells apart
  CHECK(threads.find("ZMQbg/IO/0")->second.cpus == main_cpus);
  CHECK(threads.find("caf.multiplexer")->second.cpus == main_cpus);
  CHECK_THAT(d.process().log(), Catch::Contains("storage cpus " + storage));
}
