// Fault injection against the real binaries: dispatcherd killed with -9 mid-batch, worker agents
// killed mid-task, handlers that hang, fail or get cancelled, leases that run out, late answers
// from an old lease, delayed and overdue tasks, operator orders, and a store that cannot write.
// Each test prints one line with the numbers it checked; docs/RELIABILITY.md names the test that
// proves each promise. Waits, reply timeouts and liveness intervals of the timing-heavy tests
// stretch with DISPATCH_TEST_TIME_SCALE (tests/support/time_scale.hpp): slower sanitizer builds.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "protocol/wall_clock.hpp"
#include "tests/integration/harness.hpp"
#include "tests/support/time_scale.hpp"

using namespace dispatch;
using namespace dispatch::testing;

namespace {

protocol::task_spec spec(std::string type, std::string payload = {}, std::string project = "rel") {
  protocol::task_spec s;
  s.project = std::move(project);
  s.type = std::move(type);
  s.payload = std::move(payload);
  return s;
}

std::uint64_t total_tasks(const protocol::stats& s) {
  std::uint64_t n = 0;
  for (const auto& [status, count] : s.tasks) n += count;
  return n;
}

std::uint64_t unfinished(const protocol::stats& s) {
  return s.tasks.at("pending") + s.tasks.at("running") + s.tasks.at("scheduled");
}

bool has(const std::vector<task_id>& ids, task_id id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

std::string tail(const std::string& text, std::size_t n = 3000) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

// One line per test, so a run shows what was checked, not only that it passed.
template <class... Args>
void report(const char* format, Args... args) {
  std::printf("[reliability] ");
  std::printf(format, args...);
  std::printf("\n");
  std::fflush(stdout);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST_CASE("kill -9 of dispatcherd three times mid-batch loses no acknowledged task",
          "[reliability]") {
  const std::string durability = GENERATE(as<std::string>{}, "wal", "fsync");
  // A slow agent that misses heartbeats is lost and its tasks rerun: allowed here, but a stretched
  // heartbeat keeps that from eating the attempts of a sanitizer build.
  dispatcher_process d({{"--heartbeat", scaled_arg(200ms), "--recovery-grace", scaled_arg(500ms),
                         "--durability", durability}});
  auto a1 = start_agent(d, "crash-a1", {"--capacity", "4", "--fetch-wait", "200ms"});
  auto a2 = start_agent(d, "crash-a2", {"--capacity", "4", "--fetch-wait", "200ms"});
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 2; }, scaled(10s)));

  // The producer submits batches without pause; what it was told is all it may rely on. Each
  // batch has unique echo tasks (result = payload) and a few 30 ms sleeps, so that tasks are
  // running at every kill.
  struct expected {
    std::string payload;
    std::string result;
  };
  struct outcome {
    std::mutex m;
    std::map<task_id, expected> acknowledged;
    std::set<std::string> unacknowledged;  // echo payloads of submits without an answer
    std::size_t acked_batches = 0;
    std::size_t failed_batches = 0;
  } out;
  std::atomic<bool> stop{false};
  std::atomic<bool> in_flight{false};
  constexpr int echoes = 16;
  constexpr int sleeps = 4;
  std::thread producer([&] {
    std::unique_ptr<wire_client> client;
    for (int batch = 0; !stop; ++batch) {
      if (!client) client = std::make_unique<wire_client>(d.work_endpoint());
      protocol::submit s;
      std::vector<expected> wanted;
      for (int i = 0; i < echoes + sleeps; ++i) {
        const bool echo = i < echoes;
        const auto payload = echo ? "b" + std::to_string(batch) + "-" + std::to_string(i) : "30";
        wanted.push_back({payload, echo ? payload : ""});
        auto t = spec(echo ? "echo" : "sleep", payload, "crash");
        t.max_attempts = 10;  // a task may be requeued by each crash; that is not a failure
        s.tasks.push_back(std::move(t));
      }
      std::vector<task_id> ids;
      in_flight = true;
      try {
        const auto r = client->call(std::move(s), scaled(1500ms));
        if (auto* ok = std::get_if<protocol::submitted>(&r.body)) ids = ok->ids;
      } catch (const std::exception&) {
        client.reset();  // a reply may still come to the old socket; it is not an acknowledgement
      }
      in_flight = false;
      std::lock_guard<std::mutex> lock(out.m);
      if (ids.size() == wanted.size()) {
        ++out.acked_batches;
        for (std::size_t i = 0; i < ids.size(); ++i) out.acknowledged.emplace(ids[i], wanted[i]);
      } else {
        ++out.failed_batches;
        for (int i = 0; i < echoes; ++i) out.unacknowledged.insert(wanted[i].payload);
      }
      std::this_thread::sleep_for(10ms);  // pacing, so that the agents keep up
    }
  });
  auto acked = [&] {
    std::lock_guard<std::mutex> lock(out.m);
    return out.acknowledged.size();
  };

  int kills_mid_batch = 0;
  std::string running_at_kills;
  try {
    for (int kill = 0; kill < 3; ++kill) {
      const auto target = acked() + 300;
      REQUIRE(wait_until([&] { return acked() >= target; }, scaled(30s)));
      running_at_kills += (kill ? "," : "") + std::to_string(d.stats().tasks.at("running"));
      // Wait (briefly) for a submit on the wire, so that the kill lands in the middle of one.
      wait_until([&] { return in_flight.load(); }, 1s);
      if (in_flight) ++kills_mid_batch;
      d.stop(SIGKILL);
      d.start();
    }
    // The producer and both agents go on by themselves after the last restart.
    const auto target = acked() + 200;
    REQUIRE(wait_until([&] { return acked() >= target; }, scaled(30s)));
  } catch (...) {
    stop = true;
    producer.join();
    throw;
  }
  stop = true;
  producer.join();

  const bool drained = wait_until([&] { return unfinished(d.stats()) == 0; }, scaled(60s));
  if (!drained)
    UNSCOPED_INFO("dispatcherd log:\n" << tail(d.process().log()) << "\nagent 1 log:\n"
                                       << tail(a1->log()) << "\nagent 2 log:\n"
                                       << tail(a2->log()));
  REQUIRE(drained);

  // Every acknowledged id is completed, with its own payload and result (no id was reused).
  wire_client client(d.work_endpoint());
  std::size_t completed = 0, lost = 0, wrong = 0, rerun = 0;
  for (const auto& [id, want] : out.acknowledged) {
    const auto r = client.call(protocol::get_task{id});
    const auto* info = std::get_if<protocol::task_info>(&r.body);
    if (!info || info->t.status != task_status::completed) {
      ++lost;
      UNSCOPED_INFO("acknowledged task " << id << " is "
                                         << (info ? to_string(info->t.status) : "missing"));
    } else if (info->t.payload != want.payload || info->t.result != want.result) {
      ++wrong;
    } else {
      ++completed;
      rerun += info->t.attempts > 1;
    }
  }
  // Each echo payload was stored at most once; unacknowledged ones may be there or not.
  wire_client admin(d.admin_endpoint());
  protocol::list_tasks q;
  q.project = "crash";
  q.limit = 10000;
  const auto all = expect<protocol::task_list>(admin.call(q, scaled(20s))).tasks;
  std::map<std::string, int> seen;
  for (const auto& t : all)
    if (t.type == "echo") ++seen[t.payload];
  std::size_t duplicates = 0, unacked_present = 0;
  for (const auto& [payload, n] : seen) duplicates += n > 1 ? n - 1 : 0;
  for (const auto& p : out.unacknowledged) unacked_present += seen.count(p);
  const auto st = d.stats();

  report("kill -9 x3 (%s): kills mid-submit=%d, running at kills=%s, batches acked=%zu "
         "unanswered=%zu, acknowledged=%zu completed=%zu lost=%zu wrong=%zu (attempts>1: %zu), "
         "unacknowledged echoes=%zu (present %zu), stored=%zu duplicates=%zu",
         durability.c_str(), kills_mid_batch, running_at_kills.c_str(), out.acked_batches,
         out.failed_batches, out.acknowledged.size(), completed, lost, wrong, rerun,
         out.unacknowledged.size(), unacked_present, all.size(), duplicates);
  CHECK(lost == 0);
  CHECK(wrong == 0);
  CHECK(completed == out.acknowledged.size());
  CHECK(duplicates == 0);
  CHECK(all.size() < 10000);  // else the listing above was cut short
  CHECK(st.tasks.at("dead") == 0);
  CHECK(st.tasks.at("failed") == 0);
  CHECK(a1->running());
  CHECK(a2->running());
}

TEST_CASE("after kill -9 of dispatcherd a re-registering agent keeps its task, others wait the grace",
          "[reliability]") {
  dispatcher_process d({{"--heartbeat", scaled_arg(200ms), "--recovery-grace", "2s"}});
  auto agent = start_agent(d, "survivor", {"--capacity", "1"});
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 1; }, 10s));
  wire_client producer(d.work_endpoint());
  const auto kept = submit(producer, {spec("sleep", "2000")}).at(0);
  REQUIRE(wait_until([&] { return status_of(producer, kept).status == task_status::running; }, 5s));
  // A second task goes to a worker that will never come back.
  const auto orphan = submit(producer, {spec("echo", "orphan")}).at(0);
  {
    wire_client vanished(d.work_endpoint());
    expect<protocol::registered>(vanished.call(worker_spec("vanished")));
    auto jobs = fetch(vanished, 1);
    REQUIRE(jobs.size() == 1);
    REQUIRE(jobs[0].task == orphan);
  }
  // The running state is written in the background; wait until the store has both.
  REQUIRE(wait_until([&] { return d.stats().tasks.at("running") == 2; }, 5s));
  d.stop(SIGKILL);
  const auto restarted = std::chrono::steady_clock::now();  // the grace starts after this
  d.start();
  wire_client after(d.work_endpoint());
  CHECK(status_of(after, kept).status == task_status::running);
  CHECK(status_of(after, orphan).status == task_status::running);
  // The orphan stays running (waiting for its worker) until the grace ends, then is requeued.
  REQUIRE(wait_until([&] { return status_of(after, orphan).status != task_status::running; }, 10s));
  const double orphan_waited = seconds_since(restarted);
  CHECK(orphan_waited >= 1.95);
  const bool done = wait_until(
      [&] {
        return status_of(after, kept).status == task_status::completed &&
               status_of(after, orphan).status == task_status::completed;
      },
      10s);
  if (!done) UNSCOPED_INFO("agent log:\n" << tail(agent->log()));
  REQUIRE(done);
  const auto k = status_of(after, kept);
  const auto o = status_of(after, orphan);
  CHECK(k.attempts == 1);  // adopted, not run again
  CHECK(k.worker == "survivor");
  CHECK(o.worker == "survivor");
  CHECK(o.attempts == 2);
  report("recovery grace 2s: task running on a re-registering agent kept attempt %u and "
         "completed; task of a vanished worker requeued %.2fs after the restart, completed "
         "(attempts=%u)",
         k.attempts, orphan_waited, o.attempts);
}

TEST_CASE("kill -9 of a worker agent mid-task: its tasks finish on another agent",
          "[reliability]") {
  // The rescuer must not itself be lost for a late heartbeat (its tasks would run a third time):
  // on a slow build the heartbeat, and so the detection of the killed agent, is stretched.
  dispatcher_process d({{"--heartbeat", scaled_arg(200ms)}});
  auto doomed = start_agent(d, "doomed", {"--capacity", "2"});
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 1; }, scaled(10s)));
  wire_client producer(d.work_endpoint());
  const auto ids = submit(producer, {spec("sleep", "1500"), spec("sleep", "1500")});
  REQUIRE(wait_until(
      [&] {
        for (auto id : ids) {
          const auto t = status_of(producer, id);
          if (t.status != task_status::running || t.worker != "doomed") return false;
        }
        return true;
      },
      scaled(10s)));

  doomed->signal(SIGKILL);
  REQUIRE(doomed->wait(5s));
  const auto killed = std::chrono::steady_clock::now();
  auto rescuer = start_agent(d, "rescuer", {"--capacity", "2"});
  REQUIRE(wait_until(
      [&] {
        for (auto id : ids)
          if (status_of(producer, id).status != task_status::completed) return false;
        return true;
      },
      scaled(20s)));
  const double took = seconds_since(killed);
  int on_rescuer = 0;
  for (auto id : ids) {
    const auto t = status_of(producer, id);
    CHECK(t.worker == "rescuer");
    CHECK(t.attempts == 2);
    on_rescuer += t.worker == "rescuer";
  }
  CHECK(find_worker(d.stats(), "doomed") == nullptr);
  report("agent kill -9: tasks=%zu completed on rescuer=%d, lost=0, kill to completion %.2fs "
         "(liveness 3 x %s + 1.5s of work)",
         ids.size(), on_rescuer, took, scaled_arg(200ms).c_str());
}

TEST_CASE("a hanging handler loses its lease, is stopped, and the task is retried",
          "[reliability]") {
  // The stop comes in a heartbeat reply. An agent that misses heartbeats on a slow build
  // re-registers, and the stop for a lease that ran out meanwhile is then never sent (reported as
  // a dispatcher bug); the stretched heartbeat keeps this test about the lease.
  dispatcher_process d({{"--heartbeat", scaled_arg(200ms), "--retry-base", "100ms"}});
  temp_dir scratch;
  const auto marker = scratch.path() + "/first-run-happened";
  auto agent = start_agent(d, "hangs-once", {"--capacity", "1"});
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 1; }, scaled(10s)));

  wire_client producer(d.work_endpoint());
  auto t = spec("exec", "if [ -e " + marker + " ]; then echo ok; else touch " + marker +
                            "; sleep 30; fi");
  t.timeout_ms = 500;
  const auto started = std::chrono::steady_clock::now();
  const auto id = submit(producer, {t}).at(0);
  const bool done =
      wait_until([&] { return status_of(producer, id).status == task_status::completed; },
                 scaled(15s));
  if (!done) UNSCOPED_INFO("agent log:\n" << tail(agent->log()));
  REQUIRE(done);
  const double took = seconds_since(started);
  const auto r = status_of(producer, id);
  CHECK(r.attempts == 2);
  CHECK(r.result == "ok\n");
  // Capacity 1: the second attempt could only run once the hanging first one was stopped.
  CHECK(took < 10.0);
  CHECK(agent->running());
  report("lease timeout: timeout_ms=500, attempts=%u, result=%s, completed after %.2fs (the "
         "hanging `sleep 30` was stopped)",
         r.attempts, r.result == "ok\n" ? "ok" : "?", took);
}

TEST_CASE("a task failing every attempt ends dead after max_attempts, with backoff in between",
          "[reliability]") {
  dispatcher_process d({{"--retry-base", "200ms"}});
  auto agent = start_agent(d, "failer", {"--capacity", "2"});
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 1; }, 10s));

  wire_client producer(d.work_endpoint());
  auto retryable = spec("fail", "boom");
  retryable.max_attempts = 3;
  auto fatal = spec("fail", "fatal");
  fatal.max_attempts = 3;
  const auto ids = submit(producer, {retryable, fatal});
  REQUIRE(wait_until(
      [&] {
        return status_of(producer, ids[0]).status == task_status::dead &&
               status_of(producer, ids[1]).status == task_status::failed;
      },
      15s));
  const auto dead = status_of(producer, ids[0]);
  const auto failed = status_of(producer, ids[1]);
  CHECK(dead.attempts == 3);
  CHECK_THAT(dead.error, Catch::Contains("boom"));
  // Backoffs before attempts 2 and 3: 200 ms and 400 ms, each scaled by [0.5, 1].
  const auto span = dead.finished_at - dead.created_at;
  CHECK(span >= 300);
  CHECK(failed.attempts == 1);
  CHECK_FALSE(failed.error.empty());
  CHECK(d.stats().tasks.at("dead") == 1);
  report("dead after retries: attempts=%u/3, error kept=\"%s\", created->finished=%lld ms "
         "(minimum backoff 300 ms); not retryable: status=failed attempts=%u",
         dead.attempts, dead.error.c_str(), static_cast<long long>(span), failed.attempts);
}

TEST_CASE("a complete for an expired lease is refused as stale, the current attempt's result wins",
          "[reliability]") {
  dispatcher_process d({{"--retry-base", "50ms"}});
  wire_client producer(d.work_endpoint());
  wire_client w1(d.work_endpoint());
  wire_client w2(d.work_endpoint());
  expect<protocol::registered>(w1.call(worker_spec("slow")));
  expect<protocol::registered>(w2.call(worker_spec("fast")));
  auto t = spec("echo", "x");
  t.timeout_ms = 300;
  const auto id = submit(producer, {t}).at(0);

  auto first = fetch(w1, 1);
  REQUIRE(first.size() == 1);
  CHECK(first[0].attempt == 1);
  CHECK(first[0].timeout_ms == 300);
  // w1 sits on it; the lease runs out, the backoff passes and w2 gets attempt 2.
  auto second = fetch(w2, 1, 5000);
  REQUIRE(second.size() == 1);
  CHECK(second[0].task == id);
  CHECK(second[0].attempt == 2);
  const auto between = status_of(producer, id);
  CHECK(between.worker == "fast");
  CHECK_THAT(between.error, Catch::Contains("lease"));

  // w1 is told to drop the task, and its late answer is refused.
  const auto hb = expect<protocol::heartbeat_reply>(w1.call(protocol::heartbeat{}));
  CHECK(has(hb.cancel, id));
  CHECK(error_of(w1.call(protocol::complete{id, 1, "from attempt 1"})) ==
        protocol::error_code::stale_lease);
  CHECK(error_of(w1.call(protocol::fail{id, 1, "late failure", true})) ==
        protocol::error_code::stale_lease);
  // Right attempt, wrong worker.
  CHECK(error_of(w1.call(protocol::complete{id, 2, "not mine"})) ==
        protocol::error_code::not_owner);
  expect<protocol::ok>(w2.call(protocol::complete{id, 2, "from attempt 2"}));

  const auto r = status_of(producer, id);
  CHECK(r.status == task_status::completed);
  CHECK(r.result == "from attempt 2");
  CHECK(r.attempts == 2);
  CHECK(r.worker == "fast");

  // A lease that runs out on the last attempt ends the task dead, with the reason kept.
  auto last = spec("echo", "y");
  last.timeout_ms = 300;
  last.max_attempts = 1;
  const auto last_id = submit(producer, {last}).at(0);
  REQUIRE(fetch(w1, 1).size() == 1);
  REQUIRE(wait_until([&] { return status_of(producer, last_id).status == task_status::dead; },
                     5s));
  const auto dead = status_of(producer, last_id);
  CHECK_THAT(dead.error, Catch::Contains("lease"));
  CHECK(error_of(w1.call(protocol::complete{last_id, 1, "too late"})) ==
        protocol::error_code::invalid_state);
  report("stale lease: attempt 1 complete -> stale_lease, attempt 2 by another worker -> stored "
         "(result=\"%s\", attempts=%u), cancel told in heartbeat=%d; last attempt's lease ran "
         "out -> dead (\"%s\")",
         r.result.c_str(), r.attempts, static_cast<int>(has(hb.cancel, id)), dead.error.c_str());
}

TEST_CASE("extend moves a lease, heartbeat replies list leases about to expire", "[reliability]") {
  // This test is the worker and heartbeats every 150 ms; a stretched heartbeat (and so liveness)
  // keeps a slow build from declaring it lost between two of them.
  dispatcher_process d({{"--heartbeat", scaled_arg(200ms)}});
  wire_client producer(d.work_endpoint());
  wire_client w(d.work_endpoint());
  expect<protocol::registered>(w.call(worker_spec("extender")));
  auto t = spec("echo", "x");
  t.timeout_ms = 400;
  const auto id = submit(producer, {t}).at(0);
  auto jobs = fetch(w, 1);
  REQUIRE(jobs.size() == 1);

  const auto hb = expect<protocol::heartbeat_reply>(w.call(protocol::heartbeat{}));
  CHECK(has(hb.expiring, id));
  CHECK(error_of(w.call(protocol::extend{id, 7, 3000})) == protocol::error_code::stale_lease);
  expect<protocol::ok>(w.call(protocol::extend{id, 1, 3000}));
  // Well past the original 400 ms lease, heartbeating so that the worker stays alive.
  const auto until = std::chrono::steady_clock::now() + 900ms;
  while (std::chrono::steady_clock::now() < until) {
    const auto r = expect<protocol::heartbeat_reply>(w.call(protocol::heartbeat{}));
    CHECK_FALSE(has(r.cancel, id));
    std::this_thread::sleep_for(150ms);
  }
  const auto held = status_of(producer, id);
  CHECK(held.status == task_status::running);
  CHECK(held.attempts == 1);
  expect<protocol::ok>(w.call(protocol::complete{id, 1, "in time"}));
  CHECK(status_of(producer, id).status == task_status::completed);
  report("extend: lease 400 ms extended to 3000 ms, still attempt %u after 900 ms, completed; "
         "expiring listed=%d",
         held.attempts, static_cast<int>(has(hb.expiring, id)));
}

TEST_CASE("a repeated idempotency key creates nothing, also after a restart", "[reliability]") {
  dispatcher_process d({{"--durability", "fsync"}});
  wire_client producer(d.work_endpoint());
  auto keyed = spec("echo", "first");
  keyed.idempotency_key = "order-42";
  const auto first = submit(producer, {keyed}).at(0);
  const auto count = total_tasks(d.stats());
  CHECK(count == 1);

  auto again = keyed;
  again.payload = "second";
  CHECK(submit(producer, {again}).at(0) == first);
  // Inside a batch with a new key: the old key answers with the first task, the new one is new.
  auto fresh = spec("echo", "fresh");
  fresh.idempotency_key = "order-43";
  const auto mixed = submit(producer, {again, fresh});
  CHECK(mixed.at(0) == first);
  CHECK(mixed.at(1) != first);
  // Keys are per project.
  auto elsewhere = again;
  elsewhere.project = "other";
  const auto other = submit(producer, {elsewhere}).at(0);
  CHECK(other != first);
  // Two producers racing with a new key, both requests in flight at once: one task.
  wire_client racer_a(d.work_endpoint()), racer_b(d.work_endpoint());
  auto raced = spec("echo", "race");
  raced.idempotency_key = "order-44";
  const auto ra = racer_a.send(protocol::submit{{raced}});
  const auto rb = racer_b.send(protocol::submit{{raced}});
  const auto id_a = expect<protocol::submitted>(racer_a.wait_reply(ra)).ids.at(0);
  const auto id_b = expect<protocol::submitted>(racer_b.wait_reply(rb)).ids.at(0);
  CHECK(id_a == id_b);
  const auto before_restart = total_tasks(d.stats());
  CHECK(before_restart == 4);

  d.stop(SIGKILL);
  d.start();
  wire_client after(d.work_endpoint());
  CHECK(submit(after, {again}).at(0) == first);
  CHECK(submit(after, {fresh}).at(0) == mixed.at(1));
  const auto after_restart = total_tasks(d.stats());
  CHECK(after_restart == before_restart);
  CHECK(status_of(after, first).payload == "first");
  report("idempotency: key repeated 4x (once across kill -9, fsync) -> same id %llu; tasks %llu "
         "-> %llu (+1 other key, +1 other project, +1 for 2 racing submits) -> %llu after restart",
         static_cast<unsigned long long>(first), static_cast<unsigned long long>(count),
         static_cast<unsigned long long>(before_restart),
         static_cast<unsigned long long>(after_restart));
}

TEST_CASE("an idempotency key is forgotten after the window", "[reliability]") {
  dispatcher_process d({{"--idempotency-window", "500ms"}});
  wire_client producer(d.work_endpoint());
  auto keyed = spec("echo", "x");
  keyed.idempotency_key = "short-lived";
  const auto first = submit(producer, {keyed}).at(0);
  CHECK(submit(producer, {keyed}).at(0) == first);
  std::this_thread::sleep_for(700ms);  // let the window pass, then check
  const auto later = submit(producer, {keyed}).at(0);
  CHECK(later != first);
  CHECK(total_tasks(d.stats()) == 2);
  report("idempotency window 500ms: same id inside, new id %llu after 700 ms",
         static_cast<unsigned long long>(later));
}

TEST_CASE("a delayed task waits in the dispatcher, survives a restart and runs after its time",
          "[reliability]") {
  dispatcher_process d;
  wire_client producer(d.work_endpoint());
  {
    wire_client w(d.work_endpoint());
    expect<protocol::registered>(w.call(worker_spec("early")));
    auto t = spec("echo", "later");
    t.delay_ms = 2500;
    const auto submitted_at = wall_now();
    const auto id = submit(producer, {t}).at(0);
    const auto s = status_of(producer, id);
    CHECK(s.status == task_status::scheduled);
    CHECK(s.run_at >= submitted_at + 2500);
    CHECK(s.run_at <= wall_now() + 2500);
    CHECK(fetch(w, 1, 500).empty());
    // A scheduled task can be cancelled; its time passing does not bring it back.
    auto doomed = spec("echo", "never");
    doomed.delay_ms = 1000;
    const auto never = submit(producer, {doomed}).at(0);
    expect<protocol::ok>(producer.call(protocol::cancel{never}));

    d.stop(SIGKILL);
    d.start();
    wire_client after(d.work_endpoint());
    const auto restarted = status_of(after, id);
    const bool still_early = wall_now() < s.run_at;
    if (still_early) CHECK(restarted.status == task_status::scheduled);
    CHECK(restarted.run_at == s.run_at);

    wire_client w2(d.work_endpoint());
    expect<protocol::registered>(w2.call(worker_spec("on-time")));
    auto jobs = fetch(w2, 1, 6000);
    const auto got_at = wall_now();
    REQUIRE(jobs.size() == 1);
    CHECK(jobs[0].task == id);
    CHECK(got_at >= s.run_at);
    expect<protocol::ok>(w2.call(protocol::complete{id, jobs[0].attempt, "done"}));
    CHECK(status_of(after, id).status == task_status::completed);
    CHECK(status_of(after, never).status == task_status::cancelled);
    CHECK(fetch(w2, 1, 200).empty());
    report("delayed: delay_ms=2500, scheduled before and after kill -9 (checked=%d), empty "
           "fetch before time, fetched %lld ms after run_at",
           static_cast<int>(still_early), static_cast<long long>(got_at - s.run_at));
  }
}

TEST_CASE("cancel of a running exec task kills it and frees the agent at once", "[reliability]") {
  // The cancel comes in a heartbeat reply; stretched on slow builds, like the waits below.
  dispatcher_process d({{"--heartbeat", scaled_arg(200ms)}});
  temp_dir scratch;
  const auto pid_file = scratch.path() + "/pid";
  auto agent = start_agent(d, "canceller", {"--capacity", "1"});
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 1; }, scaled(10s)));
  wire_client producer(d.work_endpoint());
  const auto id = submit(producer, {spec("exec", "echo $$ > " + pid_file + "; exec sleep 30")}).at(0);
  int pid = 0;
  REQUIRE(wait_until(
      [&] {
        pid = std::atoi(read_file(pid_file).c_str());
        return pid > 0 && status_of(producer, id).status == task_status::running;
      },
      scaled(10s)));

  const auto cancelled_at = std::chrono::steady_clock::now();
  expect<protocol::ok>(producer.call(protocol::cancel{id}));
  CHECK(status_of(producer, id).status == task_status::cancelled);
  const bool gone =
      wait_until([&] { return ::kill(pid, 0) != 0 && errno == ESRCH; }, scaled(5s));
  CHECK(gone);
  const double killed_after = seconds_since(cancelled_at);
  const auto next = submit(producer, {spec("echo", "next")}).at(0);
  const bool free =
      wait_until([&] { return status_of(producer, next).status == task_status::completed; },
                 scaled(5s));
  if (!free) UNSCOPED_INFO("agent log:\n" << tail(agent->log()));
  CHECK(free);
  const double next_after = seconds_since(cancelled_at);
  CHECK(status_of(producer, id).status == task_status::cancelled);  // its late outcome dropped
  report("cancel running exec: cancelled at once, `sleep 30` process gone after %.2fs, next task "
         "completed %.2fs after the cancel",
         killed_after, next_after);
}

TEST_CASE("a task not done by its deadline is marked overdue, once", "[reliability]") {
  dispatcher_process d({{"--log-level", "debug"}});  // task events are logged at debug
  wire_client producer(d.work_endpoint());
  wire_client w(d.work_endpoint());
  expect<protocol::registered>(w.call(worker_spec("quick")));
  const auto now = wall_now();
  auto late = spec("nobody-serves-this", "x");
  late.deadline = now + 300;
  auto early = spec("echo", "y");
  early.deadline = now + 300;
  const auto ids = submit(producer, {late, early});
  auto jobs = fetch(w, 1);
  REQUIRE(jobs.size() == 1);
  REQUIRE(jobs[0].task == ids[1]);
  expect<protocol::ok>(w.call(protocol::complete{ids[1], jobs[0].attempt, "in time"}));

  REQUIRE(wait_until([&] { return status_of(producer, ids[0]).overdue; }, 5s));
  const auto marked_at = wall_now();
  const auto t = status_of(producer, ids[0]);
  CHECK(t.status == task_status::pending);  // overdue is a flag, not an end
  CHECK(marked_at >= late.deadline);
  CHECK_FALSE(status_of(producer, ids[1]).overdue);
  auto overdue_events = [&] {
    const auto log = d.process().log();
    std::size_t n = 0;
    for (auto at = log.find("task.overdue"); at != std::string::npos;
         at = log.find("task.overdue", at + 1))
      ++n;
    return n;
  };
  std::this_thread::sleep_for(500ms);  // several timer ticks; then count the events
  const auto events_first_run = overdue_events();
  CHECK(events_first_run == 1);

  d.stop();
  d.start();
  wire_client after(d.work_endpoint());
  CHECK(status_of(after, ids[0]).overdue);
  std::this_thread::sleep_for(500ms);
  const auto events_after_restart = overdue_events();
  CHECK(events_after_restart == 0);  // the flag is stored: no second report
  report("deadline now+300ms: overdue=true seen %lld ms after the deadline, overdue events=%zu "
         "(and %zu after a restart); task completed in time: overdue=false",
         static_cast<long long>(marked_at - late.deadline), events_first_run,
         events_after_restart);
}

TEST_CASE("drain stops new work for a worker, stop makes a real agent finish and exit 0",
          "[reliability]") {
  // Orders come in heartbeat replies; an agent that misses heartbeats on a slow build
  // re-registers, and a drain given before is then forgotten: the heartbeat is stretched there.
  dispatcher_process d({{"--heartbeat", scaled_arg(200ms)}});
  auto agent = start_agent(d, "ordered", {"--capacity", "1"});
  REQUIRE(wait_until([&] { return d.stats().workers.size() == 1; }, scaled(10s)));
  wire_client admin(d.admin_endpoint());
  wire_client producer(d.work_endpoint());

  expect<protocol::ok>(admin.call(protocol::worker_order{"ordered", "drain"}));
  CHECK(find_worker(d.stats(), "ordered")->state == "draining");
  const auto held_back = submit(producer, {spec("echo", "wait")}).at(0);
  std::this_thread::sleep_for(scaled(1s));  // five heartbeats and many fetches; then check
  CHECK(status_of(producer, held_back).status == task_status::pending);

  expect<protocol::ok>(admin.call(protocol::worker_order{"ordered", "resume"}));
  REQUIRE(wait_until(
      [&] { return status_of(producer, held_back).status == task_status::completed; },
      scaled(5s)));

  const auto last = submit(producer, {spec("sleep", "1000")}).at(0);
  REQUIRE(wait_until([&] { return status_of(producer, last).status == task_status::running; },
                     scaled(5s)));
  expect<protocol::ok>(admin.call(protocol::worker_order{"ordered", "stop"}));
  const auto code = agent->wait(scaled(10s));
  if (!code) UNSCOPED_INFO("agent log:\n" << tail(agent->log()));
  REQUIRE(code);
  CHECK(*code == 0);
  const auto t = status_of(producer, last);
  CHECK(t.status == task_status::completed);  // held work was finished, not dropped
  CHECK(t.attempts == 1);
  CHECK(find_worker(d.stats(), "ordered") == nullptr);
  CHECK(error_of(admin.call(protocol::worker_order{"nobody", "drain"})) ==
        protocol::error_code::unknown_worker);
  report("orders: drained worker left a task pending for 1s, resume -> completed, stop -> held "
         "task completed (attempts=%u), agent exit code %d",
         t.attempts, *code);
}

TEST_CASE("an operator can retry a dead task and remove a finished one", "[reliability]") {
  dispatcher_process d;
  wire_client admin(d.admin_endpoint());
  wire_client producer(d.work_endpoint());
  wire_client w(d.work_endpoint());
  expect<protocol::registered>(w.call(worker_spec("w")));
  auto once = spec("echo", "x");
  once.max_attempts = 1;
  const auto id = submit(producer, {once}).at(0);
  auto jobs = fetch(w, 1);
  REQUIRE(jobs.size() == 1);
  expect<protocol::ok>(w.call(protocol::fail{id, 1, "broken", true}));
  auto t = status_of(producer, id);
  REQUIRE(t.status == task_status::dead);
  CHECK(t.error == "broken");

  expect<protocol::ok>(admin.call(protocol::retry_task{id}));
  t = status_of(producer, id);
  CHECK(t.status == task_status::pending);
  // A fresh allowance of failures; the attempt counter goes on, so attempt 1's lease stays stale.
  CHECK(t.failures == 0);
  CHECK(t.attempts == 1);
  // The requeue is stored before the ok: it survives a crash.
  d.stop(SIGKILL);
  d.start();
  CHECK(status_of(producer, id).status == task_status::pending);
  expect<protocol::registered>(w.call(worker_spec("w")));
  jobs = fetch(w, 1);
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].task == id);
  CHECK(jobs[0].attempt == 2);
  expect<protocol::ok>(w.call(protocol::complete{id, 2, "fixed"}));
  CHECK(status_of(producer, id).result == "fixed");
  CHECK(error_of(admin.call(protocol::retry_task{id})) == protocol::error_code::invalid_state);

  const auto pending = submit(producer, {spec("nobody-serves-this")}).at(0);
  CHECK(error_of(admin.call(protocol::remove_task{pending})) ==
        protocol::error_code::invalid_state);
  CHECK(error_of(admin.call(protocol::retry_task{pending})) == protocol::error_code::invalid_state);
  expect<protocol::ok>(admin.call(protocol::remove_task{id}));
  CHECK(error_of(producer.call(protocol::get_task{id})) == protocol::error_code::unknown_task);
  const auto st = d.stats();
  CHECK(st.tasks.at("completed") == 0);
  CHECK(st.tasks.at("dead") == 0);
  CHECK(total_tasks(st) == 1);
  d.stop(SIGKILL);
  d.start();
  wire_client after(d.work_endpoint());
  CHECK(error_of(after.call(protocol::get_task{id})) == protocol::error_code::unknown_task);
  CHECK(total_tasks(d.stats()) == 1);
  report("retry/remove: dead -> retry (kept across kill -9) -> attempt 1 again -> completed -> "
         "removed (gone after kill -9 too); unfinished tasks refuse retry/remove");
}

TEST_CASE("finished tasks are removed after the retention, unfinished ones stay",
          "[reliability]") {
  dispatcher_process d({{"--retention", "300ms", "--idempotency-window", "300ms"}});
  wire_client producer(d.work_endpoint());
  wire_client w(d.work_endpoint());
  constexpr std::uint32_t capacity = 100;
  expect<protocol::registered>(w.call(worker_spec("w", capacity)));
  auto keyed = spec("echo", "x");
  keyed.idempotency_key = "purged-with-its-task";
  const auto done = submit(producer, {keyed}).at(0);
  auto jobs = fetch(w, 1);
  REQUIRE(jobs.size() == 1);
  expect<protocol::ok>(w.call(protocol::complete{done, 1, "r"}));
  // More finished tasks than one slice of the purge (500) takes, so the round needs several.
  constexpr std::size_t bulk = 1'200;
  submit(producer, std::vector<protocol::task_spec>(bulk, spec("echo", "y")));
  for (std::size_t finished = 0; finished < bulk;) {
    const auto batch = fetch(w, capacity);
    REQUIRE_FALSE(batch.empty());
    protocol::report r;
    for (const auto& j : batch) r.results.push_back({j.task, j.attempt, false, "r", "", true});
    CHECK(expect<protocol::reported>(w.call(std::move(r))).refused.empty());
    finished += batch.size();
  }
  const auto waiting = submit(producer, {spec("nobody-serves-this")}).at(0);
  // The first purge runs a few seconds after the start.
  const bool purged = wait_until(
      [&] {
        const auto r = producer.call(protocol::get_task{done});
        return std::holds_alternative<protocol::error>(r.body) &&
               d.stats().tasks.at("completed") == 0;
      },
      15s);
  REQUIRE(purged);
  CHECK(error_of(producer.call(protocol::get_task{done})) == protocol::error_code::unknown_task);
  CHECK(status_of(producer, waiting).status == task_status::pending);
  const auto st = d.stats();
  CHECK(st.tasks.at("completed") == 0);
  CHECK(st.tasks.at("pending") == 1);
  CHECK(submit(producer, {keyed}).at(0) != done);  // its key expired too (window 300ms)
  report("retention 300ms: completed task purged, pending task kept, counts completed=%llu "
         "pending=%llu",
         static_cast<unsigned long long>(st.tasks.at("completed")),
         static_cast<unsigned long long>(st.tasks.at("pending")));
}

namespace {

// dispatcherd started through /bin/sh with a file-size limit (in the shell's ulimit blocks);
// `limit_blocks` 0 = no limit. Ready once it answers `stats`.
std::unique_ptr<child_process> start_limited(const std::string& dir, const std::string& data,
                                             int work_port, int admin_port, int limit_blocks,
                                             const std::string& log_name) {
  std::vector<std::string> argv = {"/bin/sh", "-c",
                                   limit_blocks > 0
                                       ? "ulimit -f " + std::to_string(limit_blocks) + " && exec \"$@\""
                                       : "exec \"$@\"",
                                   "sh",
                                   dispatcherd_path(),
                                   "--data-dir",
                                   data,
                                   "--work-endpoint",
                                   tcp_endpoint(work_port),
                                   "--admin-endpoint",
                                   tcp_endpoint(admin_port),
                                   "--threads",
                                   "2"};
  for (auto& a : test_token_args()) argv.push_back(std::move(a));
  auto p = std::make_unique<child_process>(argv, dir + "/" + log_name);
  const bool ready = wait_until(
      [&] {
        if (!p->running()) return true;
        try {
          wire_client probe(tcp_endpoint(admin_port));
          probe.call(protocol::get_stats{}, 200ms);
          return true;
        } catch (const std::exception&) {
          return false;
        }
      },
      15s);
  if (!ready || !p->running()) throw std::runtime_error("dispatcherd did not start:\n" + p->log());
  return p;
}

}  // namespace

TEST_CASE("a store that cannot write refuses submits with storage and acknowledges nothing lost",
          "[reliability]") {
  temp_dir dir;
  const auto data = dir.path() + "/data";
  const auto ports = free_ports(2);
  // 4096 blocks: 2 MiB with dash's 512-byte blocks, 4 MiB with bash's 1024-byte ones.
  auto limited = start_limited(dir.path(), data, ports[0], ports[1], 4096, "limited.log");

  std::map<task_id, std::string> acknowledged;
  std::size_t refused = 0, other_errors = 0, batches = 0;
  std::string first_refusal;
  const std::string filler(16 * 1024, 'z');
  {
    wire_client producer(tcp_endpoint(ports[0]));
    for (int batch = 0; batch < 400 && refused < 3; ++batch, ++batches) {
      protocol::submit s;
      std::vector<std::string> payloads;
      for (int i = 0; i < 20; ++i) {
        payloads.push_back(std::to_string(batch) + "-" + std::to_string(i) + "-" + filler);
        s.tasks.push_back(spec("echo", payloads.back(), "full"));
      }
      const auto r = producer.call(std::move(s), 10s);
      if (auto* ok = std::get_if<protocol::submitted>(&r.body)) {
        REQUIRE(ok->ids.size() == payloads.size());
        for (std::size_t i = 0; i < payloads.size(); ++i)
          acknowledged.emplace(ok->ids[i], payloads[i]);
      } else if (auto* e = std::get_if<protocol::error>(&r.body)) {
        if (e->code == protocol::error_code::storage) {
          if (refused++ == 0) first_refusal = e->message;
        } else {
          ++other_errors;
          UNSCOPED_INFO("unexpected error: " << e->message);
        }
      }
    }
    // Still alive and answering: reads work while writes are refused.
    CHECK(limited->running());
    if (!acknowledged.empty()) {
      const auto r = producer.call(protocol::get_task{acknowledged.begin()->first});
      CHECK(std::holds_alternative<protocol::task_info>(r.body));
    }
  }
  if (refused == 0) UNSCOPED_INFO("dispatcherd log:\n" << tail(limited->log()));
  REQUIRE(refused >= 1);
  CHECK(other_errors == 0);
  const bool alive = limited->running();
  CHECK(alive);
  limited->signal(SIGTERM);
  auto exit_code = limited->wait(10s);
  if (!exit_code) {
    limited->signal(SIGKILL);
    exit_code = limited->wait(5s);
  }
  CHECK(exit_code);

  // Without the limit: every acknowledged task is there, with its payload, and work goes on.
  auto healthy = start_limited(dir.path(), data, ports[0], ports[1], 0, "healthy.log");
  wire_client reader(tcp_endpoint(ports[0]));
  std::size_t readable = 0, lost = 0;
  for (const auto& [id, payload] : acknowledged) {
    const auto r = reader.call(protocol::get_task{id});
    const auto* info = std::get_if<protocol::task_info>(&r.body);
    if (info && info->t.payload == payload)
      ++readable;
    else
      ++lost;
  }
  CHECK(lost == 0);
  const auto stored = total_tasks(expect<protocol::stats>(
      wire_client(tcp_endpoint(ports[1])).call(protocol::get_stats{})));
  CHECK(stored >= acknowledged.size());
  const auto more = reader.call(protocol::submit{{spec("echo", "after the limit", "full")}});
  CHECK(std::holds_alternative<protocol::submitted>(more.body));
  report("store failure (ulimit -f): batches=%zu acknowledged tasks=%zu refused with storage=%zu "
         "other errors=%zu, alive while refusing=%d, SIGTERM exit=%d; after restart readable=%zu "
         "lost=%zu stored=%llu (refused but stored: %llu); first refusal: %s",
         batches, acknowledged.size(), refused, other_errors, static_cast<int>(alive),
         exit_code ? *exit_code : -1, readable, lost, static_cast<unsigned long long>(stored),
         static_cast<unsigned long long>(stored - acknowledged.size()),
         first_refusal.substr(0, 200).c_str());
}
