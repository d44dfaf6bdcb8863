// /metrics of a real dispatcherd: the test plays producer and worker through a known batch and
// then scrapes over HTTP, checking the counts by value. The live scrape is also what promtool
// lints and what scripts/check-monitoring.sh checks the dashboard and alert rules against.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "tests/integration/harness.hpp"
#include "tests/support/prometheus_scrape.hpp"

using namespace dispatch;
using namespace dispatch::testing;

// A failed check on a series shows its value, or that the scrape lacks it.
namespace Catch {
template <>
struct StringMaker<std::optional<double>> {
  static std::string convert(const std::optional<double>& v) {
    return v ? StringMaker<double>::convert(*v) : "(no such series)";
  }
};
}  // namespace Catch

namespace {

// ---- a scrape client: plain HTTP/1.0 over a socket, and the text format parsed

// The body of GET /metrics; throws when the endpoint does not answer 200.
std::string scrape_text(int port) {
  const auto r = http_get(port, "/metrics");
  if (r.status != 200) throw std::runtime_error("GET /metrics answered " + std::to_string(r.status));
  return r.body;
}

struct scrape {
  std::string text;
  std::vector<sample> samples;

  // The series with exactly these labels; nullopt if absent.
  std::optional<double> value(const std::string& name, const labels& l = {}) const {
    for (const auto& s : samples)
      if (s.name == name && s.labels_ == l) return s.value;
    return std::nullopt;
  }
  // 0 for an absent series: a counter the daemon has not reported yet counts nothing.
  double count(const std::string& name, const labels& l = {}) const {
    return value(name, l).value_or(0);
  }
  std::vector<sample> series(const std::string& name) const {
    std::vector<sample> out;
    for (const auto& s : samples)
      if (s.name == name) out.push_back(s);
    return out;
  }
  double sum(const std::string& name) const {
    double total = 0;
    for (const auto& s : series(name)) total += s.value;
    return total;
  }
};

scrape parse(std::string text) {
  scrape out;
  out.samples = parse_exposition(text);
  out.text = std::move(text);
  return out;
}

// Scrapes until `settled` holds (the daemon reports some metrics just after its reply) or 5 s
// pass; returns the last scrape either way, for the checks to report on.
scrape settle(int port, const std::function<bool(const scrape&)>& settled) {
  scrape last;
  wait_until(
      [&] {
        last = parse(scrape_text(port));
        return settled(last);
      },
      5s);
  return last;
}

// ---- running tools

struct command_result {
  int status = -1;
  std::string output;  // stdout and stderr
};

command_result run(const std::string& command) {
  command_result r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + command);
  char buf[4096];
  while (const std::size_t n = std::fread(buf, 1, sizeof(buf), pipe)) r.output.append(buf, n);
  const int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::optional<std::string> find_promtool() {
  if (const char* env = std::getenv("PROMTOOL"); env && ::access(env, X_OK) == 0) return env;
  std::istringstream path(std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin");
  for (std::string dir; std::getline(path, dir, ':');) {
    const auto candidate = (std::filesystem::path(dir) / "promtool").string();
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

// The source tree, found from this file's path: the test runs from the build tree, and the
// checker script and the configurations it reads live in the source tree.
std::filesystem::path source_root() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
}

protocol::task_spec spec(std::string project, std::int32_t priority) {
  protocol::task_spec s;
  s.project = std::move(project);
  s.type = "echo";
  s.priority = priority;
  return s;
}

std::string band(std::int32_t priority) {
  if (priority < 0) return "negative";
  if (priority == 0) return "0";
  if (priority < 10) return "1-9";
  if (priority < 100) return "10-99";
  return "100+";
}

// Every queue depth series equals `expected` (project, band) -> count; series not named in it
// must be 0.
void check_depth(const scrape& s, const std::map<std::pair<std::string, std::string>, int>& expected) {
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& d : s.series("dispatch_queue_depth")) {
    const auto key = std::make_pair(d.labels_.at("project"), d.labels_.at("priority_band"));
    seen.insert(key);
    const auto it = expected.find(key);
    INFO("dispatch_queue_depth{project=" << key.first << ",priority_band=" << key.second << "}");
    CHECK(d.value == (it == expected.end() ? 0 : it->second));
  }
  for (const auto& [key, n] : expected) {
    INFO("missing dispatch_queue_depth{project=" << key.first << ",priority_band=" << key.second
                                                 << "} " << n);
    CHECK(seen.count(key) == 1);
  }
}

}  // namespace

TEST_CASE("metrics: with fsync durability no write is made on the dispatcher's thread") {
  const int port = free_ports(1)[0];
  dispatcher_process d(
      {{"--metrics-address", "127.0.0.1:" + std::to_string(port), "--durability", "fsync"}});
  wire_client producer(d.work_endpoint());
  REQUIRE(submit(producer, {spec("alpha", 1), spec("alpha", 2)}).size() == 2);
  const auto s = settle(port, [](const scrape& s) {
    return s.count("dispatch_tasks_submitted_total", {{"project", "alpha"}}) == 2;
  });
  INFO(s.text);
  CHECK(s.count("dispatch_store_batch_seconds_count") >= 1);
  CHECK(s.value("dispatch_store_inline_writes_total") == 0);
}

TEST_CASE("metrics: a submit that a waiting worker takes is stored and assigned on the dispatcher's thread") {
  const int port = free_ports(1)[0];
  dispatcher_process d({{"--metrics-address", "127.0.0.1:" + std::to_string(port)}});
  wire_client worker(d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1", 1)));
  const auto fetch_id = worker.send(protocol::fetch{1, 30000});
  // Requests of one connection are handled in order: once the heartbeat is answered, the fetch
  // waits at the dispatcher before the submit below arrives.
  expect<protocol::heartbeat_reply>(worker.call(protocol::heartbeat{}));
  wire_client producer(d.work_endpoint());
  const auto ids = submit(producer, {spec("alpha", 1)});
  const auto jobs = expect<protocol::jobs>(worker.wait_reply(fetch_id, 5s)).jobs;
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].task == ids[0]);
  const auto s = settle(port, [](const scrape& s) {
    return s.count("dispatch_queue_wait_seconds_count") == 1;
  });
  INFO(s.text);
  // The submit's write and then, in the same turn, the assignment's: the writer was woken for
  // neither.
  CHECK(s.value("dispatch_store_inline_writes_total") == 2);
}

TEST_CASE("metrics: a live scrape counts a known batch by value, and passes promtool and the monitoring check") {
  const int port = free_ports(1)[0];
  dispatcher_process d({{"--metrics-address", "127.0.0.1:" + std::to_string(port)}});
  wire_client producer(d.work_endpoint());
  wire_client worker(d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1", 10)));

  // One mixed submit of two projects over every priority band.
  const std::vector<protocol::task_spec> specs = {
      spec("alpha", 200), spec("beta", 10), spec("alpha", 50), spec("beta", 1),
      spec("alpha", 5),   spec("alpha", 0), spec("beta", 0),   spec("alpha", 0),
      spec("alpha", -3),  spec("beta", -7)};
  const auto ids = submit(producer, specs);
  REQUIRE(ids.size() == specs.size());
  std::map<task_id, protocol::task_spec> by_id;
  for (std::size_t i = 0; i < ids.size(); ++i) by_id[ids[i]] = specs[i];

  // Cancel one pending beta task, then the worker takes six: three complete, two fail for good,
  // one stays running; three stay pending.
  expect<protocol::ok>(producer.call(protocol::cancel{ids[3]}));
  const auto jobs = fetch(worker, 6);
  // The jobs leave before their assignments are written: report nothing until that write is
  // made (the submit's, the cancel's, the assignments'), so that no request of the worker's is
  // waiting when the dispatcher decides where it goes.
  REQUIRE(settle(port, [](const scrape& s) {
            return s.value("dispatch_store_inline_writes_total") == 3;
          }).value("dispatch_store_inline_writes_total") == 3);
  REQUIRE(jobs.size() == 6);
  std::map<std::string, int> completed, failed;
  for (std::size_t i = 0; i < 3; ++i) {
    expect<protocol::ok>(worker.call(protocol::complete{jobs[i].task, jobs[i].attempt, "ok"}));
    ++completed[jobs[i].project];
  }
  for (std::size_t i = 3; i < 5; ++i) {
    expect<protocol::ok>(
        worker.call(protocol::fail{jobs[i].task, jobs[i].attempt, "bad input", false}));
    ++failed[jobs[i].project];
  }
  std::set<task_id> taken = {ids[3]};
  for (const auto& j : jobs) taken.insert(j.task);
  std::map<std::pair<std::string, std::string>, int> pending;
  for (const auto& [id, s] : by_id)
    if (!taken.count(id)) ++pending[{s.project, band(s.priority)}];
  REQUIRE(pending.size() >= 1);

  SECTION("counts after the batch") {
    const auto s = settle(port, [](const scrape& s) {
      return s.count("dispatch_task_run_seconds_count") >= 5 &&
             s.sum("dispatch_queue_depth") == 3 &&
             s.count("dispatch_worker_running_tasks", {{"worker", "w1"}, {"pool", "active"}}) == 1;
    });
    INFO(s.text);
    CHECK(s.value("dispatch_tasks_submitted_total", {{"project", "alpha"}}) == 6);
    CHECK(s.value("dispatch_tasks_submitted_total", {{"project", "beta"}}) == 4);
    for (const std::string project : {"alpha", "beta"}) {
      INFO("project " << project);
      CHECK(s.count("dispatch_tasks_completed_total", {{"project", project}}) == completed[project]);
      CHECK(s.count("dispatch_tasks_failed_total", {{"project", project}}) == failed[project]);
      CHECK(s.count("dispatch_tasks_retried_total", {{"project", project}}) == 0);
      CHECK(s.count("dispatch_tasks_dead_total", {{"project", project}}) == 0);
    }
    CHECK(s.value("dispatch_tasks_cancelled_total", {{"project", "beta"}}) == 1);
    CHECK(s.count("dispatch_tasks_cancelled_total", {{"project", "alpha"}}) == 0);

    check_depth(s, pending);
    CHECK(s.value("dispatch_worker_running_tasks", {{"worker", "w1"}, {"pool", "active"}}) == 1);
    CHECK(s.value("dispatch_workers", {{"pool", "active"}, {"state", "active"}}) == 1);

    CHECK(s.value("dispatch_queue_wait_seconds_count") == 6);  // one per assignment
    CHECK(s.value("dispatch_task_run_seconds_count") == 5);    // completed + failed
    CHECK(s.count("dispatch_store_batch_seconds_count") > 0);
    CHECK(s.value("dispatch_store_errors_total") == 0);
    // Every write, made by the dispatcher itself: the submit, the cancel, the fetch's
    // assignments, three completions and two failures. Each is small, and no request was ever
    // waiting for the thread: the clients wait for each answer (given after the write) before
    // they ask again, and for the assignments' write before they report.
    CHECK(s.value("dispatch_store_inline_writes_total") == 8);
    CHECK(s.value("dispatch_workers_lost_total") == 0);
    CHECK(s.value("dispatch_reserve_engagements_total") == 0);
    CHECK(s.value("dispatch_reserve_releases_total") == 0);
    CHECK(s.value("dispatch_dispatcher_mailbox_messages").has_value());
  }

  SECTION("a worker that leaves loses its series; the queue drains back to 0") {
    // Goodbye: the running task goes back to the queue, and w1's series goes away.
    expect<protocol::ok>(worker.call(protocol::goodbye{}));
    auto s = settle(port, [](const scrape& s) {
      return s.series("dispatch_worker_running_tasks").empty() &&
             s.sum("dispatch_queue_depth") == 4;
    });
    {
      INFO(s.text);
      CHECK(s.series("dispatch_worker_running_tasks").empty());
      CHECK(s.sum("dispatch_queue_depth") == 4);
      CHECK(s.count("dispatch_workers", {{"pool", "active"}, {"state", "active"}}) == 0);
    }

    wire_client w2(d.work_endpoint());
    expect<protocol::registered>(w2.call(worker_spec("w2", 10)));
    const auto rest = fetch(w2, 10);
    REQUIRE(rest.size() == 4);
    for (const auto& j : rest) {
      expect<protocol::ok>(w2.call(protocol::complete{j.task, j.attempt, "ok"}));
      ++completed[j.project];
    }
    s = settle(port, [&](const scrape& s) {
      return s.count("dispatch_tasks_completed_total", {{"project", "alpha"}}) +
                     s.count("dispatch_tasks_completed_total", {{"project", "beta"}}) == 7 &&
             s.sum("dispatch_queue_depth") == 0 &&
             s.count("dispatch_worker_running_tasks", {{"worker", "w2"}, {"pool", "active"}}) == 0;
    });
    INFO(s.text);
    for (const std::string project : {"alpha", "beta"}) {
      INFO("project " << project);
      CHECK(s.count("dispatch_tasks_completed_total", {{"project", project}}) == completed[project]);
      CHECK(s.count("dispatch_tasks_failed_total", {{"project", project}}) == failed[project]);
    }
    check_depth(s, {});
    CHECK(s.value("dispatch_worker_running_tasks", {{"worker", "w2"}, {"pool", "active"}}) == 0);
    CHECK(s.value("dispatch_workers", {{"pool", "active"}, {"state", "active"}}) == 1);
    CHECK(s.value("dispatch_queue_wait_seconds_count") == 10);  // the requeued task waited again
    // 7 completed + 2 failed; the attempt ended by goodbye may count as a run as well.
    CHECK(s.count("dispatch_task_run_seconds_count") >= 9);
    CHECK(s.count("dispatch_task_run_seconds_count") <= 10);

    // The scrape, with every family now populated, against promtool and the monitoring check.
    const auto scrape_file = d.dir() + "/metrics.txt";
    std::ofstream(scrape_file) << s.text;
    const auto promtool = find_promtool();
    if (!promtool)
      FAIL("promtool not found: install the Debian package 'prometheus' (scripts/setup.sh does)");
    const auto lint = run(quoted(*promtool) + " check metrics < " + quoted(scrape_file));
    INFO("promtool check metrics:\n" << lint.output);
    CHECK(lint.status == 0);

    const auto script = source_root() / "scripts" / "check-monitoring.sh";
    REQUIRE(std::filesystem::exists(script));
    const auto check = run("PROMTOOL=" + quoted(*promtool) + " bash " + quoted(script.string()) +
                           " " + quoted(scrape_file));
    INFO("check-monitoring.sh:\n" << check.output);
    CHECK(check.status == 0);
  }
}

TEST_CASE("metrics: a lost worker is counted, its attempt failed and retried, its series dropped") {
  const int port = free_ports(1)[0];
  dispatcher_process d({{"--metrics-address", "127.0.0.1:" + std::to_string(port), "--heartbeat",
                         "100ms", "--liveness", "3", "--retry-base", "50ms"}});
  wire_client producer(d.work_endpoint());
  wire_client worker(d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("silent")));
  submit(producer, {spec("gamma", 0)});
  REQUIRE(fetch(worker, 1).size() == 1);

  // The worker never sends a heartbeat: lost after 3 x 100 ms. Its task failed an attempt, is
  // retried after a short backoff and waits in the queue again.
  const auto s = settle(port, [](const scrape& s) {
    return s.count("dispatch_workers_lost_total") == 1 &&
           s.series("dispatch_worker_running_tasks").empty() &&
           s.count("dispatch_queue_depth", {{"project", "gamma"}, {"priority_band", "0"}}) == 1;
  });
  INFO(s.text);
  CHECK(s.value("dispatch_workers_lost_total") == 1);
  CHECK(s.value("dispatch_tasks_failed_total", {{"project", "gamma"}}) == 1);
  CHECK(s.value("dispatch_tasks_retried_total", {{"project", "gamma"}}) == 1);
  CHECK(s.value("dispatch_tasks_dead_total", {{"project", "gamma"}}) == 0);
  CHECK(s.series("dispatch_worker_running_tasks").empty());
  CHECK(s.count("dispatch_workers", {{"pool", "active"}, {"state", "active"}}) == 0);
  check_depth(s, {{{"gamma", "0"}, 1}});
  CHECK(s.value("dispatch_task_run_seconds_count") == 1);  // the attempt the loss ended
}

TEST_CASE("metrics: dispatcherd will not start on a metrics address that is taken") {
  fd_guard taken(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  REQUIRE(::bind(taken.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::getsockname(taken.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  REQUIRE(::listen(taken.get(), 1) == 0);
  const auto address = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  // The harness throws with the daemon's log when it exits instead of answering.
  CHECK_THROWS_WITH(dispatcher_process({{"--metrics-address", address}}),
                    Catch::Contains(address));
}

TEST_CASE("metrics: port 0 runs dispatcherd without a metrics endpoint") {
  dispatcher_process d({{"--metrics-address", "127.0.0.1:0"}});
  wire_client producer(d.work_endpoint());
  CHECK(submit(producer, {spec("p", 0)}).size() == 1);
  CHECK(d.stats().tasks.at("pending") == 1);
}
