// dispatcher_metrics as Prometheus sees it: every check reads the metrics back through a real
// HTTP GET of /metrics, so names, labels, values and the exposition format are all covered.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "metrics/dispatcher_metrics.hpp"
#include "metrics/priority_band.hpp"
#include "tests/support/prometheus_scrape.hpp"

using dispatch::worker_pool;
using namespace dispatch::testing;
using dispatch::metrics::dispatcher_metrics;

namespace {

// A loopback port that was free a moment ago (the kernel picks it).
int free_port() {
  fd_guard fd(::socket(AF_INET, SOCK_STREAM, 0));
  if (fd.get() < 0) throw std::runtime_error("socket() failed");
  auto addr = loopback(0);
  socklen_t len = sizeof(addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("cannot find a free port");
  return ntohs(addr.sin_port);
}

std::string address_of(int port) { return "127.0.0.1:" + std::to_string(port); }

// A running metrics endpoint on a free port, and scrapes of it.
class served {
 public:
  served() : port_(free_port()), metrics_(address_of(port_)) {}
  dispatcher_metrics& operator*() { return metrics_; }
  dispatcher_metrics* operator->() { return &metrics_; }
  int port() const { return port_; }

  std::string text() {
    const auto r = http_get(port_, "/metrics");
    REQUIRE(r.status == 200);
    return r.body;
  }
  std::vector<sample> scrape() { return parse_exposition(text()); }
  // The value of the series with exactly these labels; nullopt if the scrape lacks it.
  std::optional<double> value(const std::string& name, const labels& l = {}) {
    for (const auto& s : scrape())
      if (s.name == name && s.labels_ == l) return s.value;
    return std::nullopt;
  }
  // Every series of a family, whatever their labels.
  std::vector<sample> series(const std::string& name) {
    std::vector<sample> out;
    for (auto& s : scrape())
      if (s.name == name) out.push_back(std::move(s));
    return out;
  }

 private:
  int port_;
  dispatcher_metrics metrics_;
};

// Inodes of the TCP sockets in LISTEN state (st 0A), IPv4 and IPv6.
std::set<std::string> listening_inodes() {
  std::set<std::string> out;
  for (const char* file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(file);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::vector<std::string> f;
      for (std::string x; fields >> x;) f.push_back(x);
      if (f.size() > 9 && f[3] == "0A") out.insert(f[9]);
    }
  }
  return out;
}

// How many listening TCP sockets this process holds: the fds that are sockets among the
// listening inodes.
std::size_t own_listeners() {
  const auto listening = listening_inodes();
  std::size_t n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) throw std::runtime_error("cannot read /proc/self/fd");
  while (const dirent* e = ::readdir(dir)) {
    char target[256];
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t len = ::readlink(link.c_str(), target, sizeof(target) - 1);
    if (len <= 0) continue;
    const std::string t(target, static_cast<std::size_t>(len));
    if (t.rfind("socket:[", 0) == 0 && listening.count(t.substr(8, t.size() - 9))) ++n;
  }
  ::closedir(dir);
  return n;
}

double le_of(const sample& s) {
  const auto& le = s.labels_.at("le");
  return le == "+Inf" ? HUGE_VAL : std::stod(le);
}

}  // namespace

TEST_CASE("metrics: a port of 0 turns the endpoint off but still counts") {
  const auto before = own_listeners();
  dispatcher_metrics m("127.0.0.1:0");
  CHECK(m.endpoint().empty());
  CHECK(own_listeners() == before);
  // Every call is still valid with nothing served.
  m.submitted("p", 2);
  m.queued("p", 5, 1);
  m.running("w", worker_pool::active, 1);
  m.worker_left("w");
  m.queue_wait(0.1);
  m.mailbox_depth(3);

  // The same check sees a served endpoint, so it would have caught a listener above.
  served on;
  CHECK(own_listeners() == before + 1);
}

TEST_CASE("metrics: the endpoint is the bound address and serves the exposition format") {
  served m;
  CHECK(m->endpoint() == address_of(m.port()));
  const auto r = http_get(m.port(), "/metrics");
  CHECK(r.status == 200);
  CHECK(r.headers.find("text/plain") != std::string::npos);
  // Unlabelled families are there from the start, at 0.
  for (const char* line :
       {"# TYPE dispatch_queue_wait_seconds histogram", "# TYPE dispatch_workers_lost_total counter",
        "# TYPE dispatch_dispatcher_mailbox_messages gauge", "dispatch_workers_lost_total 0",
        "dispatch_reserve_engagements_total 0", "dispatch_reserve_releases_total 0",
        "dispatch_store_errors_total 0", "dispatch_store_inline_writes_total 0",
        "dispatch_dispatcher_mailbox_messages 0",
        "dispatch_queue_wait_seconds_count 0", "dispatch_task_run_seconds_count 0",
        "dispatch_store_batch_seconds_count 0"}) {
    INFO(line);
    CHECK(r.body.find(std::string(line) + "\n") != std::string::npos);
  }
  // A labelled family shows up with its first series (the library leaves out empty families).
  CHECK(r.body.find("dispatch_queue_depth") == std::string::npos);
  m->queued("p", 0, 1);
  const auto text = m.text();
  CHECK(text.find("# TYPE dispatch_queue_depth gauge\n") != std::string::npos);
  CHECK(text.find("# TYPE dispatch_tasks_submitted_total counter\n") != std::string::npos);
}

TEST_CASE("metrics: the endpoint stops promptly after it has been scraped") {
  // The HTTP server's listener otherwise sleeps up to 2 s before it notices the stop, which
  // every daemon shutdown would pay.
  std::chrono::steady_clock::time_point start;
  {
    served m;
    m.text();
    start = std::chrono::steady_clock::now();
  }
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1000));

  // Also when it was bound by host name.
  const int port = free_port();
  {
    dispatcher_metrics m("localhost:" + std::to_string(port));
    CHECK(m.endpoint() == "localhost:" + std::to_string(port));
    CHECK(http_get(port, "/metrics").status == 200);
    start = std::chrono::steady_clock::now();
  }
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1000));
}

TEST_CASE("metrics: an address that cannot be served throws, naming it") {
  CHECK_THROWS_WITH(dispatcher_metrics("no-port"), Catch::Contains("no-port"));
  CHECK_THROWS_WITH(dispatcher_metrics("127.0.0.1:http"), Catch::Contains("127.0.0.1:http"));

  // A port another socket listens on.
  fd_guard taken(::socket(AF_INET, SOCK_STREAM, 0));
  auto addr = loopback(0);
  socklen_t len = sizeof(addr);
  REQUIRE(::bind(taken.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::getsockname(taken.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  REQUIRE(::listen(taken.get(), 1) == 0);
  const auto busy = address_of(ntohs(addr.sin_port));
  CHECK_THROWS_WITH(dispatcher_metrics(busy), Catch::Contains(busy));
}

TEST_CASE("metrics: task counters count by project, each starting at 0") {
  served m;
  m->submitted("a", 3);
  m->submitted("a");
  m->submitted("b", 2);
  m->submitted("c", 0);  // nothing submitted: no series either
  m->completed("a");
  m->completed("a");
  m->failed("a");
  m->retried("a");
  m->dead("b");
  m->cancelled("b");

  const auto text = m.text();
  // Literal lines, as a scraper reads them.
  CHECK(text.find("dispatch_tasks_submitted_total{project=\"a\"} 4\n") != std::string::npos);
  CHECK(text.find("dispatch_tasks_submitted_total{project=\"b\"} 2\n") != std::string::npos);
  CHECK(text.find("project=\"c\"") == std::string::npos);

  CHECK(m.value("dispatch_tasks_completed_total", {{"project", "a"}}) == 2);
  CHECK(m.value("dispatch_tasks_failed_total", {{"project", "a"}}) == 1);
  CHECK(m.value("dispatch_tasks_retried_total", {{"project", "a"}}) == 1);
  CHECK(m.value("dispatch_tasks_dead_total", {{"project", "a"}}) == 0);
  CHECK(m.value("dispatch_tasks_cancelled_total", {{"project", "a"}}) == 0);
  CHECK(m.value("dispatch_tasks_completed_total", {{"project", "b"}}) == 0);
  CHECK(m.value("dispatch_tasks_failed_total", {{"project", "b"}}) == 0);
  CHECK(m.value("dispatch_tasks_retried_total", {{"project", "b"}}) == 0);
  CHECK(m.value("dispatch_tasks_dead_total", {{"project", "b"}}) == 1);
  CHECK(m.value("dispatch_tasks_cancelled_total", {{"project", "b"}}) == 1);
  CHECK(m.series("dispatch_tasks_submitted_total").size() == 2);
}

TEST_CASE("metrics: priorities map to their bands") {
  using dispatch::metrics::priority_band;
  CHECK(priority_band(INT32_MIN) == "negative");
  CHECK(priority_band(-1) == "negative");
  CHECK(priority_band(0) == "0");
  CHECK(priority_band(1) == "1-9");
  CHECK(priority_band(9) == "1-9");
  CHECK(priority_band(10) == "10-99");
  CHECK(priority_band(99) == "10-99");
  CHECK(priority_band(100) == "100+");
  CHECK(priority_band(INT32_MAX) == "100+");
}

TEST_CASE("metrics: queue depth moves by project and priority band") {
  served m;
  for (int p : {INT32_MIN, -1, 0, 0, 1, 9, 9, 10, 99, 100, INT32_MAX}) m->queued("p", p, +1);
  m->queued("q", 5, +1);
  m->queued("q", 5, +1);
  m->queued("q", 5, -1);
  m->queued("p", 9, -1);

  auto depth = [&](const std::string& project, const std::string& band) {
    return m.value("dispatch_queue_depth", {{"project", project}, {"priority_band", band}});
  };
  CHECK(depth("p", "negative") == 2);
  CHECK(depth("p", "0") == 2);
  CHECK(depth("p", "1-9") == 2);
  CHECK(depth("p", "10-99") == 2);
  CHECK(depth("p", "100+") == 2);
  CHECK(depth("q", "1-9") == 1);
  // Only bands that were used have a series.
  CHECK_FALSE(depth("q", "0"));
  CHECK(m.series("dispatch_queue_depth").size() == 6);

  // Leaving the queue takes it back to 0, the series stays (a flat line, not a gap).
  m->queued("q", 1, -1);
  CHECK(depth("q", "1-9") == 0);
}

TEST_CASE("metrics: running tasks per worker, removed when the worker leaves") {
  served m;
  m->running("w1", worker_pool::active, 3);
  m->running("w2", worker_pool::reserve, 1);
  m->running("w1", worker_pool::active, 2);
  CHECK(m.value("dispatch_worker_running_tasks", {{"worker", "w1"}, {"pool", "active"}}) == 2);
  CHECK(m.value("dispatch_worker_running_tasks", {{"worker", "w2"}, {"pool", "reserve"}}) == 1);

  m->worker_left("w1");
  CHECK_FALSE(m.value("dispatch_worker_running_tasks", {{"worker", "w1"}, {"pool", "active"}}));
  CHECK(m.series("dispatch_worker_running_tasks").size() == 1);
  m->worker_left("w1");       // twice is harmless
  m->worker_left("unknown");  // so is a worker never seen

  // A worker moved to the other pool keeps one series, under its new pool.
  m->running("w2", worker_pool::active, 4);
  const auto w2 = m.series("dispatch_worker_running_tasks");
  REQUIRE(w2.size() == 1);
  CHECK(w2[0].labels_ == labels{{"worker", "w2"}, {"pool", "active"}});
  CHECK(w2[0].value == 4);

  // Churn does not grow the scrape: many workers come and go, nothing is left behind.
  for (int i = 0; i < 200; ++i) {
    const auto id = "churn-" + std::to_string(i);
    m->running(id, worker_pool::active, 1);
    m->worker_left(id);
  }
  CHECK(m.series("dispatch_worker_running_tasks").size() == 1);

  // A worker that comes back gets a fresh series.
  m->running("w1", worker_pool::active, 0);
  CHECK(m.value("dispatch_worker_running_tasks", {{"worker", "w1"}, {"pool", "active"}}) == 0);
}

TEST_CASE("metrics: workers by pool and state") {
  served m;
  m->workers("active", "active", 3);
  m->workers("reserve", "standby", 2);
  m->workers("reserve", "standby", 1);
  m->workers("active", "draining", 0);
  CHECK(m.value("dispatch_workers", {{"pool", "active"}, {"state", "active"}}) == 3);
  CHECK(m.value("dispatch_workers", {{"pool", "reserve"}, {"state", "standby"}}) == 1);
  CHECK(m.value("dispatch_workers", {{"pool", "active"}, {"state", "draining"}}) == 0);
  CHECK(m.series("dispatch_workers").size() == 3);
}

TEST_CASE("metrics: plain counters and the mailbox gauge") {
  served m;
  m->worker_lost();
  m->worker_lost();
  m->reserve_engaged();
  m->reserve_released();
  m->reserve_engaged();
  m->store_error();
  m->store_inline_write();
  m->mailbox_depth(17);
  CHECK(m.value("dispatch_workers_lost_total") == 2);
  CHECK(m.value("dispatch_reserve_engagements_total") == 2);
  CHECK(m.value("dispatch_reserve_releases_total") == 1);
  CHECK(m.value("dispatch_store_errors_total") == 1);
  CHECK(m.value("dispatch_store_inline_writes_total") == 1);
  CHECK(m.value("dispatch_dispatcher_mailbox_messages") == 17);
  m->mailbox_depth(0);
  CHECK(m.value("dispatch_dispatcher_mailbox_messages") == 0);
}

TEST_CASE("metrics: histograms observe into their buckets") {
  served m;
  m->queue_wait(0.0002);
  m->queue_wait(2.0);
  m->queue_wait(7200);  // past the last bucket: only +Inf
  m->queue_wait(-1);    // a clock step back counts as 0
  m->run_time(0.3);
  m->store_batch_latency(0.00004);
  m->store_batch_latency(0.002);

  CHECK(m.value("dispatch_queue_wait_seconds_count") == 4);
  CHECK(m.value("dispatch_queue_wait_seconds_sum") == Approx(7202.0002));
  CHECK(m.value("dispatch_task_run_seconds_count") == 1);
  CHECK(m.value("dispatch_task_run_seconds_sum") == Approx(0.3));
  CHECK(m.value("dispatch_store_batch_seconds_count") == 2);

  // Cumulative counts at a few boundaries, and the bucket ranges asked for.
  auto cumulative = [&](const std::string& name, double le) {
    for (const auto& s : m.series(name + "_bucket"))
      if (le_of(s) == Approx(le)) return s.value;
    FAIL("no bucket le=" << le << " in " << name);
    return -1.0;
  };
  CHECK(cumulative("dispatch_queue_wait_seconds", 0.0001) == 1);  // the clamped -1
  CHECK(cumulative("dispatch_queue_wait_seconds", 0.00025) == 2);
  CHECK(cumulative("dispatch_queue_wait_seconds", 2.5) == 3);
  CHECK(cumulative("dispatch_queue_wait_seconds", 3600) == 3);
  CHECK(cumulative("dispatch_queue_wait_seconds", HUGE_VAL) == 4);
  CHECK(cumulative("dispatch_task_run_seconds", 0.25) == 0);
  CHECK(cumulative("dispatch_task_run_seconds", 0.5) == 1);
  CHECK(cumulative("dispatch_store_batch_seconds", 0.00005) == 1);
  CHECK(cumulative("dispatch_store_batch_seconds", 0.0025) == 2);

  auto bounds = [&](const std::string& name) {
    std::vector<double> out;
    for (const auto& s : m.series(name + "_bucket")) out.push_back(le_of(s));
    return out;
  };
  for (const char* name : {"dispatch_queue_wait_seconds", "dispatch_task_run_seconds"}) {
    const auto b = bounds(name);
    REQUIRE(b.size() >= 3);
    CHECK(b.front() == Approx(0.0001));
    CHECK(b[b.size() - 2] == Approx(3600));
  }
  const auto b = bounds("dispatch_store_batch_seconds");
  REQUIRE(b.size() >= 3);
  CHECK(b.front() == Approx(0.00005));
  CHECK(b[b.size() - 2] == Approx(1));
}

TEST_CASE("metrics: calls from many threads all count") {
  served m;
  constexpr int threads = 8, rounds = 2000;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      const std::string project = t % 2 ? "odd" : "even";
      const std::string worker = "w" + std::to_string(t);
      for (int i = 0; i < rounds; ++i) {
        m->submitted(project);
        m->queued(project, i % 200 - 100, +1);
        m->running(worker, t % 2 ? worker_pool::reserve : worker_pool::active,
                   static_cast<std::uint32_t>(i));
        m->queue_wait(0.001);
        if (i % 10 == 0) m->worker_left(worker);
        m->queued(project, i % 200 - 100, -1);
        m->completed(project);
      }
      m->worker_left(worker);
    });
  for (auto& t : pool) t.join();

  CHECK(m.value("dispatch_tasks_submitted_total", {{"project", "odd"}}) == threads / 2 * rounds);
  CHECK(m.value("dispatch_tasks_completed_total", {{"project", "even"}}) == threads / 2 * rounds);
  CHECK(m.value("dispatch_queue_wait_seconds_count") == threads * rounds);
  for (const auto& s : m.series("dispatch_queue_depth")) CHECK(s.value == 0);
  CHECK(m.series("dispatch_worker_running_tasks").empty());
}
