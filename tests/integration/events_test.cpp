// Events against a real dispatcherd: the PUB stream, the stored log read back through the admin
// endpoint (`events`), the command sink, restarts, and `dispatchctl watch`.
#include <catch2/catch.hpp>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <zmq_addon.hpp>

#include "tests/integration/harness.hpp"

using namespace dispatch;
using namespace dispatch::testing;

namespace {

// Type "echo" is what the test's workers serve; other types stay pending.
protocol::task_spec spec(std::string project, std::string payload = {},
                         std::string type = "echo") {
  protocol::task_spec s;
  s.project = std::move(project);
  s.type = std::move(type);
  s.payload = std::move(payload);
  return s;
}

// A dispatcher that publishes on a port of its own, without a metrics server (its default port
// would collide with other tests running at the same time); extra arguments follow.
struct events_dispatcher {
  std::string events_endpoint;
  dispatcher_process d;

  explicit events_dispatcher(std::vector<std::string> extra = {})
      : events_endpoint(tcp_endpoint(free_ports(1)[0])), d(options(events_endpoint, extra)) {}

  static dispatcher_options options(const std::string& endpoint, std::vector<std::string> extra) {
    dispatcher_options o;
    o.extra_args = {"--events-endpoint", endpoint, "--metrics-address", "127.0.0.1:0"};
    o.extra_args.insert(o.extra_args.end(), extra.begin(), extra.end());
    return o;
  }
};

// Decodes a published payload: a msgpack map with the keys of protocol::event_record.
protocol::event_record decode(const zmq::message_t& payload) {
  const auto* p = static_cast<const std::uint8_t*>(payload.data());
  const auto j = nlohmann::json::from_msgpack(p, p + payload.size());
  protocol::event_record e;
  e.seq = j.at("seq").get<std::uint64_t>();
  e.kind = j.at("kind").get<std::string>();
  e.at = j.at("at").get<millis>();
  e.task = j.at("task").get<task_id>();
  e.project = j.at("project").get<std::string>();
  e.worker = j.at("worker").get<std::string>();
  e.detail = j.at("detail").get<std::string>();
  return e;
}

// A SUB socket on the event stream, checking every message's shape as it comes.
class subscriber {
 public:
  explicit subscriber(const std::string& endpoint, std::vector<std::string> topics = {""})
      : socket_(context_, zmq::socket_type::sub) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(endpoint);
    for (const auto& t : topics) socket_.set(zmq::sockopt::subscribe, t);
  }

  std::optional<protocol::event_record> receive(std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) <= 0) return std::nullopt;
    std::vector<zmq::message_t> parts;
    REQUIRE(zmq::recv_multipart(socket_, std::back_inserter(parts)));
    REQUIRE(parts.size() == 2);
    auto e = decode(parts[1]);
    CHECK(parts[0].to_string() == e.kind);  // topic = kind
    return e;
  }

  // Everything that arrives until `quiet` passes without a message.
  std::vector<protocol::event_record> drain(std::chrono::milliseconds quiet = 300ms) {
    std::vector<protocol::event_record> out;
    while (auto e = receive(quiet)) out.push_back(std::move(*e));
    return out;
  }

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
};

// ZeroMQ subscribes in the background: until the dispatcher has the subscription, what it
// publishes is not sent to us. Makes events (a project paused and resumed) until one arrives,
// then swallows what is left of them. Returns the seq of the last one swallowed.
std::uint64_t sync(subscriber& sub, wire_client& admin) {
  for (int i = 0; i < 100; ++i) {
    expect<protocol::ok>(admin.call(protocol::pause_project{"sync"}));
    expect<protocol::ok>(admin.call(protocol::resume_project{"sync"}));
    if (auto e = sub.receive(100ms)) {
      std::uint64_t last = e->seq;
      for (const auto& rest : sub.drain()) last = rest.seq;
      return last;
    }
  }
  FAIL("the subscriber never received an event");
  return 0;
}

// Every stored event after `after` (all pages), as the admin endpoint lists them.
std::vector<protocol::event_record> stored_events(wire_client& admin, std::uint64_t after = 0,
                                                  std::optional<std::string> project = {},
                                                  std::vector<std::string> kinds = {}) {
  std::vector<protocol::event_record> out;
  for (;;) {
    protocol::list_events q;
    q.after = after;
    q.limit = 7;  // small pages, so that paging itself is exercised
    q.project = project;
    q.kinds = kinds;
    const auto page = expect<protocol::event_list>(admin.call(q));
    for (const auto& e : page.events) {
      CHECK(e.seq > after);
      out.push_back(e);
    }
    if (page.next <= after) return out;
    after = page.next;
  }
}

std::vector<std::uint64_t> seqs_of(const std::vector<protocol::event_record>& events) {
  std::vector<std::uint64_t> out;
  for (const auto& e : events) out.push_back(e.seq);
  return out;
}

std::vector<std::string> kinds_of(const std::vector<protocol::event_record>& events,
                                  task_id task) {
  std::vector<std::string> out;
  for (const auto& e : events)
    if (e.task == task) out.push_back(e.kind);
  return out;
}

// One task submitted, fetched and completed by `worker`; returns its id.
task_id run_one(wire_client& producer, wire_client& worker, const std::string& project) {
  const auto ids = submit(producer, {spec(project, "x")});
  const auto jobs = fetch(worker, 1);
  REQUIRE(jobs.size() == 1);
  REQUIRE(jobs[0].task == ids[0]);
  expect<protocol::ok>(worker.call(protocol::complete{jobs[0].task, jobs[0].attempt, "ok"}));
  return ids[0];
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Single-quoted for /bin/sh (test paths hold no quote).
std::string sh_quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

TEST_CASE("a subscriber receives a task's events in order with increasing seq") {
  events_dispatcher ed;
  wire_client admin(ed.d.admin_endpoint());
  subscriber sub(ed.events_endpoint);
  const auto synced = sync(sub, admin);

  wire_client producer(ed.d.work_endpoint());
  wire_client worker(ed.d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1")));
  const auto id = run_one(producer, worker, "p");

  const auto got = sub.drain(500ms);
  REQUIRE(!got.empty());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].seq > (i == 0 ? synced : got[i - 1].seq));
    CHECK(got[i].at > 0);
  }
  CHECK(got.front().kind == "worker.joined");
  CHECK(got.front().worker == "w1");
  CHECK(kinds_of(got, id) ==
        std::vector<std::string>{"task.submitted", "task.assigned", "task.completed"});
  for (const auto& e : got) {
    if (e.task != id) continue;
    CHECK(e.project == "p");
    if (e.kind != "task.submitted") CHECK(e.worker == "w1");
  }

  // The stored log holds the same events, numbered the same.
  const auto stored = stored_events(admin, synced);
  CHECK(seqs_of(stored) == seqs_of(got));
  CHECK(kinds_of(stored, id) == kinds_of(got, id));

  // Topic filters: a subscriber to "task.completed" gets nothing else.
  subscriber completed(ed.events_endpoint, {"task.completed"});
  std::this_thread::sleep_for(300ms);  // let the subscription reach the dispatcher
  const auto id2 = run_one(producer, worker, "p");
  const auto only = completed.drain(500ms);
  REQUIRE(only.size() == 1);
  CHECK(only[0].kind == "task.completed");
  CHECK(only[0].task == id2);

  // Server-side filters of the admin query: project and kind prefixes.
  const auto of_p = stored_events(admin, 0, std::string("p"), {"task.completed", "worker."});
  CHECK(seqs_of(of_p).size() == 2);
  for (const auto& e : of_p) CHECK(e.kind == "task.completed");
  const auto workers = stored_events(admin, 0, std::nullopt, {"worker."});
  REQUIRE(workers.size() == 1);
  CHECK(workers[0].kind == "worker.joined");
}

TEST_CASE("a subscriber that drops out and resumes from the log gets every event exactly once") {
  events_dispatcher ed;
  wire_client admin(ed.d.admin_endpoint());
  wire_client producer(ed.d.work_endpoint());
  wire_client worker(ed.d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1", 100)));

  std::vector<protocol::event_record> received;
  std::uint64_t first = 0;
  {
    subscriber sub(ed.events_endpoint);
    first = sync(sub, admin) + 1;  // everything from here on must be received
    for (int i = 0; i < 3; ++i) run_one(producer, worker, "p");
    received = sub.drain();
    REQUIRE(received.size() >= 9);
  }  // disconnected

  // Missed while away.
  for (int i = 0; i < 3; ++i) run_one(producer, worker, "p");
  submit(producer, {spec("q", "", "idle"), spec("q", "", "idle")});

  // Events keep coming while the subscriber resumes, so the replay and the live stream overlap.
  std::atomic<bool> busy{true};
  std::thread background([&] {
    wire_client p(ed.d.work_endpoint());
    for (int i = 0; i < 30; ++i) {
      submit(p, {spec("bg", std::to_string(i), "idle")});
      std::this_thread::sleep_for(10ms);
    }
    busy = false;
  });

  {
    subscriber sub(ed.events_endpoint);
    std::this_thread::sleep_for(300ms);  // subscribed before the replay, as `watch` does
    std::uint64_t cursor = received.back().seq;
    for (auto& e : stored_events(admin, cursor)) received.push_back(std::move(e));
    if (received.back().seq > cursor) cursor = received.back().seq;
    // Live from here, dropping what the replay already gave.
    const auto take_live = [&](std::chrono::milliseconds quiet) {
      while (auto e = sub.receive(quiet)) {
        if (e->seq <= cursor) continue;
        cursor = e->seq;
        received.push_back(std::move(*e));
      }
    };
    while (busy) take_live(50ms);
    background.join();
    run_one(producer, worker, "p");
    take_live(500ms);
  }

  const auto all = stored_events(admin, first - 1);
  const auto got = seqs_of(received);
  CHECK(std::set<std::uint64_t>(got.begin(), got.end()).size() == got.size());  // no repeats
  CHECK(got == seqs_of(all));  // nothing missed, in order
  CHECK(all.size() >= 9 + 9 + 2 + 30 + 3);
}

TEST_CASE("the event command gets every event as one JSON line on stdin") {
  temp_dir scratch;
  const auto out = scratch.path() + "/events.jsonl";
  events_dispatcher ed({"--event-command", "cat >> " + sh_quote(out)});
  wire_client admin(ed.d.admin_endpoint());
  wire_client producer(ed.d.work_endpoint());
  wire_client worker(ed.d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1")));
  const auto id = run_one(producer, worker, "p");

  const auto all = stored_events(admin);
  REQUIRE(all.size() == 4);  // worker.joined and the task's three
  REQUIRE(wait_until([&] { return read_lines(out).size() >= all.size(); }, 10s));
  std::this_thread::sleep_for(200ms);  // nothing more may come
  const auto lines = read_lines(out);
  REQUIRE(lines.size() == all.size());
  std::vector<protocol::event_record> delivered;
  for (const auto& line : lines) {
    const auto j = nlohmann::json::parse(line);  // one complete object per line
    protocol::event_record e;
    e.seq = j.at("seq").get<std::uint64_t>();
    e.kind = j.at("kind").get<std::string>();
    e.at = j.at("at").get<millis>();
    e.task = j.at("task").get<task_id>();
    e.project = j.at("project").get<std::string>();
    e.worker = j.at("worker").get<std::string>();
    CHECK(j.at("detail").is_string());
    delivered.push_back(e);
  }
  CHECK(seqs_of(delivered) == seqs_of(all));
  CHECK(delivered[0].kind == "worker.joined");
  CHECK(kinds_of(delivered, id) ==
        std::vector<std::string>{"task.submitted", "task.assigned", "task.completed"});
  for (std::size_t i = 0; i < all.size(); ++i) CHECK(delivered[i].at == all[i].at);
}

TEST_CASE("a failing event command is retried, and later events wait their turn") {
  temp_dir scratch;
  const auto out = scratch.path() + "/events.jsonl";
  const auto marker = scratch.path() + "/failed-once";
  // Fails the first run only; every later run appends its event.
  const auto command = "if [ -e " + sh_quote(marker) + " ]; then cat >> " + sh_quote(out) +
                       "; else touch " + sh_quote(marker) + "; exit 3; fi";
  events_dispatcher ed({"--event-command", command});
  wire_client admin(ed.d.admin_endpoint());
  wire_client producer(ed.d.work_endpoint());
  const auto ids = submit(producer, {spec("p"), spec("p")});

  REQUIRE(wait_until([&] { return read_lines(out).size() >= 2; }, 10s));
  std::this_thread::sleep_for(200ms);
  const auto lines = read_lines(out);
  REQUIRE(lines.size() == 2);
  CHECK(std::filesystem::exists(marker));
  // In order, the first one after its retry.
  CHECK(nlohmann::json::parse(lines[0]).at("task").get<task_id>() == ids[0]);
  CHECK(nlohmann::json::parse(lines[1]).at("task").get<task_id>() == ids[1]);
  CHECK(ed.d.process().log().find("try 1 of 5") != std::string::npos);
}

TEST_CASE("events survive a restart and numbering continues") {
  events_dispatcher ed;
  wire_client producer(ed.d.work_endpoint());
  const auto ids = submit(producer, {spec("p"), spec("p"), spec("q")});
  std::vector<protocol::event_record> before;
  {
    wire_client admin(ed.d.admin_endpoint());
    before = stored_events(admin);
  }
  REQUIRE(before.size() == 3);
  CHECK(seqs_of(before) == std::vector<std::uint64_t>{1, 2, 3});

  ed.d.stop();
  ed.d.start();

  wire_client admin(ed.d.admin_endpoint());
  subscriber sub(ed.events_endpoint);
  const auto synced = sync(sub, admin);
  CHECK(synced > 3);  // the sync events themselves are numbered after the old ones

  wire_client producer2(ed.d.work_endpoint());
  const auto later = submit(producer2, {spec("p")});
  const auto live = sub.drain(500ms);
  REQUIRE(live.size() == 1);
  CHECK(live[0].kind == "task.submitted");
  CHECK(live[0].task == later[0]);
  CHECK(live[0].seq == synced + 1);

  const auto after = stored_events(admin);
  REQUIRE(after.size() >= 4);
  for (std::size_t i = 0; i < before.size(); ++i) {
    CHECK(after[i].seq == before[i].seq);
    CHECK(after[i].kind == before[i].kind);
    CHECK(after[i].task == before[i].task);
    CHECK(after[i].at == before[i].at);
  }
  CHECK(after.back().seq == live[0].seq);
  CHECK(stored_events(admin, 0, std::string("q")).size() == 1);
  CHECK(stored_events(admin, 0, std::string("q")).front().task == ids[2]);
}

TEST_CASE("events past their retention are purged, and numbering still continues") {
  events_dispatcher ed({"--event-retention", "1s"});
  {
    wire_client producer(ed.d.work_endpoint());
    submit(producer, {spec("p"), spec("p"), spec("p")});
    wire_client admin(ed.d.admin_endpoint());
    REQUIRE(stored_events(admin).size() == 3);
  }
  ed.d.stop();
  std::this_thread::sleep_for(1200ms);
  ed.d.start();  // retention runs when the notifier starts, before any request is answered

  wire_client admin(ed.d.admin_endpoint());
  CHECK(stored_events(admin).empty());
  wire_client producer(ed.d.work_endpoint());
  const auto ids = submit(producer, {spec("p")});
  const auto now = stored_events(admin);
  REQUIRE(now.size() == 1);
  CHECK(now[0].seq == 4);  // not 1: a purged seq is never handed out again
  CHECK(now[0].task == ids[0]);
}

TEST_CASE("dispatchctl watch replays from a seq, follows live, and exits 0 on SIGINT") {
  events_dispatcher ed;
  wire_client admin(ed.d.admin_endpoint());
  wire_client producer(ed.d.work_endpoint());
  wire_client worker(ed.d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1")));
  run_one(producer, worker, "p");
  run_one(producer, worker, "other");
  const auto early = stored_events(admin);
  REQUIRE(early.size() == 7);

  // From seq 2 on, project p only, task events only.
  const auto log = ed.d.dir() + "/watch.log";
  child_process watch({dispatchctl_path(), "watch", "--json", "--token", test_admin_token,
                       "--endpoint", ed.d.admin_endpoint(),
                       "--events-endpoint", ed.events_endpoint, "--from-seq", "2", "--project",
                       "p", "--types", "task."},
                      log);
  const auto lines = [&] { return read_lines(log); };
  REQUIRE(wait_until([&] { return lines().size() >= 2; }, 10s));  // replayed: seq 3 and 4
  const auto late = run_one(producer, worker, "p");
  run_one(producer, worker, "other");
  REQUIRE(wait_until([&] { return lines().size() >= 5; }, 10s));
  std::this_thread::sleep_for(300ms);

  watch.signal(SIGINT);
  const auto code = watch.wait(5s);
  REQUIRE(code);
  CHECK(*code == 0);

  std::vector<protocol::event_record> shown;
  for (const auto& line : lines()) {
    INFO(line);
    const auto j = nlohmann::json::parse(line);
    protocol::event_record e;
    e.seq = j.at("seq").get<std::uint64_t>();
    e.kind = j.at("kind").get<std::string>();
    e.task = j.at("task").is_null() ? 0 : j.at("task").get<task_id>();
    e.project = j.at("project").get<std::string>();
    CHECK(j.at("at").get<std::string>().back() == 'Z');
    shown.push_back(e);
  }
  const auto expected = stored_events(admin, 2, std::string("p"), {"task."});
  CHECK(seqs_of(shown) == seqs_of(expected));
  REQUIRE(shown.size() == 5);
  CHECK(kinds_of(shown, late) ==
        std::vector<std::string>{"task.submitted", "task.assigned", "task.completed"});
  for (const auto& e : shown) CHECK(e.project == "p");
}
