#include "metrics/dispatcher_metrics.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "metrics/priority_band.hpp"

namespace dispatch::metrics {

namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

// Waits and runs span a fast in-memory hand-off (well under a millisecond) up to tasks that sit in
// a backlog or run for an hour; roughly 1-2.5-5 steps keep histogram_quantile's interpolation
// error near 2x at every scale without blowing up the series count (23 buckets).
const Histogram::BucketBoundaries& duration_buckets() {
  static const Histogram::BucketBoundaries buckets{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
      1,      2.5,     5,      10,    30,     60,    120,  300,   600,   1800, 3600};
  return buckets;
}

// A RocksDB write batch takes tens of microseconds when it hits the memtable only and up to about
// a second when it waits for an fsync or a stall; beyond that the store errors alert matters more.
const Histogram::BucketBoundaries& store_batch_buckets() {
  static const Histogram::BucketBoundaries buckets{0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                                   0.0025,  0.005,  0.01,    0.025,  0.05,
                                                   0.1,     0.25,   0.5,     1};
  return buckets;
}

Family<Counter>& counter(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}
Family<Gauge>& gauge(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}
Family<Histogram>& histogram(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r);
}

// A clock step backwards can yield a negative duration; a histogram's _sum must not shrink, so
// such an observation counts as 0. NaN (a bug upstream) is dropped rather than poisoning _sum.
void observe(Histogram& h, double seconds) {
  if (std::isnan(seconds)) return;
  h.Observe(seconds < 0 ? 0 : seconds);
}

// "HOST:PORT" -> {HOST, PORT}; the last ':' splits, so "[::1]:9464" works too.
std::pair<std::string, std::string> split_address(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
    throw std::runtime_error("metrics address '" + address + "' is not HOST:PORT");
  const std::string port = address.substr(colon + 1);
  for (char c : port)
    if (c < '0' || c > '9')
      throw std::runtime_error("metrics address '" + address + "' has no numeric port");
  return {address.substr(0, colon), port};
}

bool port_is_zero(const std::string& port) {
  return port.find_first_not_of('0') == std::string::npos;
}

// Opens and closes one TCP connection to host:port, ignoring failures. Every address the host
// resolves to is tried ("localhost" may resolve to ::1 first while the server bound 127.0.0.1).
void knock(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return;
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, &::freeaddrinfo);
  for (const addrinfo* a = found; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    const bool connected = ::connect(fd, a->ai_addr, a->ai_addrlen) == 0;
    ::close(fd);
    if (connected) return;
  }
}

// Stops the HTTP server promptly. civetweb's listener thread sleeps in poll() for up to 2 s
// between connections and mg_stop() waits for it to notice the stop, so a daemon that has been
// scraped would take 2 s longer to exit. Connecting to the listening port wakes the poll; a
// knock every 20 ms until the stop returns makes sure one arrives after the stop flag is set.
void stop_exposer(std::unique_ptr<prometheus::Exposer>& exposer, const std::string& host,
                  const std::string& port) {
  std::atomic<bool> stopped{false};
  std::thread waker;
  try {
    waker = std::thread([&] {
      while (!stopped.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        if (!stopped.load()) knock(host, port);
      }
    });
  } catch (const std::system_error&) {
    // No thread to spare: stop the slow way rather than throw from a destructor.
  }
  exposer.reset();
  stopped = true;
  if (waker.joinable()) waker.join();
}

}  // namespace

struct dispatcher_metrics::impl {
  // Every counter of one project, resolved once when the project is first seen. All of them are
  // created together so each starts at an explicit 0: rate() and increase() over a counter that
  // appears only on its first event miss that first increment.
  struct project_series {
    Counter* submitted = nullptr;
    Counter* completed = nullptr;
    Counter* failed = nullptr;
    Counter* retried = nullptr;
    Counter* dead = nullptr;
    Counter* cancelled = nullptr;
    // Created on first use: a project usually touches one or two bands.
    std::array<Gauge*, priority_band_count> depth{};
  };
  struct worker_series {
    Gauge* running = nullptr;
    worker_pool pool = worker_pool::active;
  };

  // The registry outlives the exposer (declared first, destroyed last), so no scrape can reach a
  // family being destroyed. It is shared because the exposer only keeps a weak_ptr to it.
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();

  Family<Counter>& submitted_f = counter(*registry, "dispatch_tasks_submitted_total",
                                         "Tasks accepted by submit, by project.");
  Family<Counter>& completed_f = counter(*registry, "dispatch_tasks_completed_total",
                                         "Tasks a worker reported as succeeded, by project.");
  Family<Counter>& failed_f = counter(
      *registry, "dispatch_tasks_failed_total",
      "Failed attempts (reported failure, lease ran out, worker lost), by project.");
  Family<Counter>& retried_f = counter(*registry, "dispatch_tasks_retried_total",
                                       "Failed attempts that were scheduled again, by project.");
  Family<Counter>& dead_f = counter(*registry, "dispatch_tasks_dead_total",
                                    "Tasks that used up every allowed attempt, by project.");
  Family<Counter>& cancelled_f =
      counter(*registry, "dispatch_tasks_cancelled_total", "Tasks cancelled, by project.");
  Family<Gauge>& queue_depth_f =
      gauge(*registry, "dispatch_queue_depth",
            "Tasks pending for a worker, by project and priority band.");
  Family<Gauge>& running_f = gauge(*registry, "dispatch_worker_running_tasks",
                                   "Tasks a connected worker holds now, by worker and pool.");
  Family<Gauge>& workers_f =
      gauge(*registry, "dispatch_workers", "Connected workers, by pool and state.");
  Family<Counter>& lost_f = counter(*registry, "dispatch_workers_lost_total",
                                    "Workers declared lost after missing their heartbeats.");
  Family<Counter>& engaged_f = counter(*registry, "dispatch_reserve_engagements_total",
                                       "Times the reserve pool was engaged.");
  Family<Counter>& released_f = counter(*registry, "dispatch_reserve_releases_total",
                                        "Times the reserve pool was released.");
  Family<Counter>& store_errors_f =
      counter(*registry, "dispatch_store_errors_total", "Store writes that failed.");
  Family<Counter>& store_inline_f = counter(
      *registry, "dispatch_store_inline_writes_total",
      "Store writes the dispatcher made on its own thread instead of the writer's (small "
      "batches while the writer had none of its requests: a submit's, the assignments right "
      "after it, others while no request waited); also in dispatch_store_batch_seconds.");
  Family<Histogram>& queue_wait_f =
      histogram(*registry, "dispatch_queue_wait_seconds",
                "Time from submit (or requeue) to assignment to a worker.");
  Family<Histogram>& run_f = histogram(*registry, "dispatch_task_run_seconds",
                                       "Time from assignment to the end of the attempt.");
  Family<Histogram>& store_batch_f = histogram(*registry, "dispatch_store_batch_seconds",
                                               "Time to write one batch to the store.");
  Family<Gauge>& mailbox_f = gauge(*registry, "dispatch_dispatcher_mailbox_messages",
                                   "Messages waiting in the dispatcher actor's mailbox.");
  Family<Gauge>& parked_f =
      gauge(*registry, "dispatch_parked_tasks",
            "Pending tasks past --resident-tasks, kept in memory as their id only.");
  Family<Counter>& refused_f = counter(
      *registry, "dispatch_refused_requests_total",
      "Requests answered with an error before reaching the actors, by endpoint and error code.");
  Family<Counter>& handshake_refused_f =
      counter(*registry, "dispatch_handshakes_refused_total",
              "Connection handshakes refused by the CURVE authenticator, by reason.");

  // Unlabelled series are resolved here once and need no lock: the metric objects are atomic
  // (counters, gauges) or lock themselves (histograms).
  Counter& lost = lost_f.Add({});
  Counter& engaged = engaged_f.Add({});
  Counter& released = released_f.Add({});
  Counter& store_errors = store_errors_f.Add({});
  Counter& store_inline = store_inline_f.Add({});
  Histogram& queue_wait = queue_wait_f.Add({}, duration_buckets());
  Histogram& run = run_f.Add({}, duration_buckets());
  Histogram& store_batch = store_batch_f.Add({}, store_batch_buckets());
  Gauge& mailbox = mailbox_f.Add({});
  Gauge& parked = parked_f.Add({});

  // Label-resolved series, so the hot path does one hash lookup instead of building a label map
  // and hashing it inside the family. One lock per map: project calls come from the dispatcher,
  // store calls from the persistence actor, and they should not wait on each other.
  std::mutex projects_mutex;
  std::unordered_map<std::string, project_series> projects;
  std::mutex workers_mutex;
  std::unordered_map<std::string, worker_series> workers;
  std::mutex pool_states_mutex;
  std::map<std::pair<std::string, std::string>, Gauge*> pool_states;

  // Declared last so it is destroyed first: scrapes stop before anything they read goes away.
  std::unique_ptr<prometheus::Exposer> exposer;
  std::string endpoint;
  std::string bound_host, bound_port;  // where stop_exposer() knocks

  explicit impl(const std::string& address) {
    const auto [host, port] = split_address(address);
    if (port_is_zero(port)) return;  // off: metrics are still counted, only not served
    try {
      exposer = std::make_unique<prometheus::Exposer>(address);
    } catch (const std::exception& e) {
      throw std::runtime_error("cannot serve metrics on " + address + ": " + e.what());
    }
    exposer->RegisterCollectable(registry);
    const auto ports = exposer->GetListeningPorts();
    if (ports.empty()) throw std::runtime_error("cannot serve metrics on " + address);
    bound_port = std::to_string(ports.front());
    // getaddrinfo wants an IPv6 literal without its brackets.
    bound_host = host.size() > 1 && host.front() == '[' && host.back() == ']'
                     ? host.substr(1, host.size() - 2)
                     : host;
    endpoint = host + ":" + bound_port;
  }

  ~impl() {
    if (exposer) stop_exposer(exposer, bound_host, bound_port);
  }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  // The series of `project`, created on first sight. The pointers stay valid for the life of
  // the families: project series are never removed (projects are few and long-lived), and a
  // family keeps each metric in its own heap allocation.
  project_series& project(const std::string& name) {
    auto it = projects.find(name);
    if (it != projects.end()) return it->second;
    const prometheus::Labels labels{{"project", name}};
    project_series s;
    s.submitted = &submitted_f.Add(labels);
    s.completed = &completed_f.Add(labels);
    s.failed = &failed_f.Add(labels);
    s.retried = &retried_f.Add(labels);
    s.dead = &dead_f.Add(labels);
    s.cancelled = &cancelled_f.Add(labels);
    return projects.emplace(name, s).first->second;
  }

  // Looks the counter up under the lock, then counts outside it: the counter is atomic and its
  // address is stable (see project()).
  void count(const std::string& name, Counter* project_series::*which, double n = 1) {
    Counter* c = nullptr;
    {
      std::lock_guard<std::mutex> lock(projects_mutex);
      c = project(name).*which;
    }
    c->Increment(n);
  }
};

dispatcher_metrics::dispatcher_metrics(const std::string& address)
    : impl_(std::make_unique<impl>(address)) {}

dispatcher_metrics::~dispatcher_metrics() = default;

std::string dispatcher_metrics::endpoint() const { return impl_->endpoint; }

void dispatcher_metrics::submitted(const std::string& project, std::uint64_t n) {
  if (n == 0) return;
  impl_->count(project, &impl::project_series::submitted, static_cast<double>(n));
}
void dispatcher_metrics::completed(const std::string& project) {
  impl_->count(project, &impl::project_series::completed);
}
void dispatcher_metrics::failed(const std::string& project) {
  impl_->count(project, &impl::project_series::failed);
}
void dispatcher_metrics::retried(const std::string& project) {
  impl_->count(project, &impl::project_series::retried);
}
void dispatcher_metrics::dead(const std::string& project) {
  impl_->count(project, &impl::project_series::dead);
}
void dispatcher_metrics::cancelled(const std::string& project) {
  impl_->count(project, &impl::project_series::cancelled);
}

void dispatcher_metrics::queued(const std::string& project, std::int32_t priority,
                                std::int64_t delta) {
  const std::size_t band = priority_band_index(priority);
  Gauge* g = nullptr;
  {
    std::lock_guard<std::mutex> lock(impl_->projects_mutex);
    auto& s = impl_->project(project);
    if (!s.depth[band])
      s.depth[band] = &impl_->queue_depth_f.Add(
          {{"project", project}, {"priority_band", std::string(priority_band_name(band))}});
    g = s.depth[band];
  }
  // Decrement for a negative delta: the gauge's Increment is documented for increases only.
  if (delta >= 0)
    g->Increment(static_cast<double>(delta));
  else
    g->Decrement(-static_cast<double>(delta));
}

void dispatcher_metrics::running(const std::string& worker, worker_pool pool,
                                 std::uint32_t count) {
  // Set under the lock: worker_left() may remove this very gauge from another thread.
  std::lock_guard<std::mutex> lock(impl_->workers_mutex);
  auto it = impl_->workers.find(worker);
  if (it != impl_->workers.end() && it->second.pool != pool) {
    // The worker moved between pools: its old series would otherwise linger with a stale value.
    impl_->running_f.Remove(it->second.running);
    impl_->workers.erase(it);
    it = impl_->workers.end();
  }
  if (it == impl_->workers.end()) {
    auto& g = impl_->running_f.Add({{"worker", worker}, {"pool", std::string(to_string(pool))}});
    it = impl_->workers.emplace(worker, impl::worker_series{&g, pool}).first;
  }
  it->second.running->Set(count);
}

void dispatcher_metrics::workers(const std::string& pool, const std::string& state,
                                 std::uint32_t count) {
  std::lock_guard<std::mutex> lock(impl_->pool_states_mutex);
  auto& g = impl_->pool_states[{pool, state}];
  if (!g) g = &impl_->workers_f.Add({{"pool", pool}, {"state", state}});
  g->Set(count);
}

void dispatcher_metrics::worker_left(const std::string& worker) {
  std::lock_guard<std::mutex> lock(impl_->workers_mutex);
  auto it = impl_->workers.find(worker);
  if (it == impl_->workers.end()) return;
  impl_->running_f.Remove(it->second.running);
  impl_->workers.erase(it);
}

void dispatcher_metrics::refused(const std::string& endpoint, const std::string& code) {
  // Not on the per-task path: the family's own lookup (locked, by label set) is enough.
  impl_->refused_f.Add({{"endpoint", endpoint}, {"code", code}}).Increment();
}

void dispatcher_metrics::handshake_refused(const std::string& reason) {
  impl_->handshake_refused_f.Add({{"reason", reason}}).Increment();
}

void dispatcher_metrics::worker_lost() { impl_->lost.Increment(); }
void dispatcher_metrics::reserve_engaged() { impl_->engaged.Increment(); }
void dispatcher_metrics::reserve_released() { impl_->released.Increment(); }

void dispatcher_metrics::queue_wait(double seconds) { observe(impl_->queue_wait, seconds); }
void dispatcher_metrics::run_time(double seconds) { observe(impl_->run, seconds); }
void dispatcher_metrics::store_batch_latency(double seconds) {
  observe(impl_->store_batch, seconds);
}
void dispatcher_metrics::store_error() { impl_->store_errors.Increment(); }
void dispatcher_metrics::store_inline_write() { impl_->store_inline.Increment(); }
void dispatcher_metrics::mailbox_depth(std::size_t messages) {
  impl_->mailbox.Set(static_cast<double>(messages));
}
void dispatcher_metrics::parked(std::size_t tasks) { impl_->parked.Set(static_cast<double>(tasks)); }

}  // namespace dispatch::metrics
