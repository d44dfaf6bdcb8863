// Prometheus metrics of dispatcherd, served on /metrics. The daemon's actors report what happens
// through this small interface; the names, labels and buckets live in one place (the .cpp) so the
// dashboard and the alert rules have one source of truth.
//
// Every method is thread-safe and cheap enough for the per-task path. Label sets stay bounded:
// priorities are reported in bands, and a worker's series are removed when it leaves.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "protocol/task.hpp"

namespace dispatch::metrics {

class dispatcher_metrics {
 public:
  // Serves /metrics on `address` ("HOST:PORT"); a port of 0 turns the endpoint off (the metrics
  // are still counted). Throws std::runtime_error naming the address if it cannot bind.
  explicit dispatcher_metrics(const std::string& address);
  ~dispatcher_metrics();
  dispatcher_metrics(const dispatcher_metrics&) = delete;
  dispatcher_metrics& operator=(const dispatcher_metrics&) = delete;

  // "HOST:PORT" actually bound, or "" when off.
  std::string endpoint() const;

  // Task lifecycle, by project.
  void submitted(const std::string& project, std::uint64_t n = 1);
  void completed(const std::string& project);
  void failed(const std::string& project);  // every failed attempt (reported, lease, worker lost)
  void retried(const std::string& project);
  void dead(const std::string& project);
  void cancelled(const std::string& project);

  // Tasks waiting (pending) by project and priority band; delta +1 when queued, -1 when leaving.
  void queued(const std::string& project, std::int32_t priority, std::int64_t delta);
  // Tasks a worker runs now, by worker and pool.
  void running(const std::string& worker, worker_pool pool, std::uint32_t count);
  // Connected workers by pool and state ("active", "engaged", "standby", "draining", "stopping").
  void workers(const std::string& pool, const std::string& state, std::uint32_t count);
  void worker_left(const std::string& worker);  // drops the worker's series
  void worker_lost();
  void reserve_engaged();
  void reserve_released();

  // Durations in seconds.
  void queue_wait(double seconds);        // submit (or requeue) to assignment
  void run_time(double seconds);          // assignment to the end of the attempt
  void store_batch_latency(double seconds);
  void store_error();                     // a store write failed
  void store_inline_write();  // a write the dispatcher made itself (also in store_batch_latency)
  void mailbox_depth(std::size_t messages);  // the dispatcher actor's mailbox
  void parked(std::size_t tasks);  // pending tasks kept as their id only (--resident-tasks)

  // A request the dispatcher refused before it reached the actors, by endpoint ("work",
  // "admin") and error code ("unauthenticated", "forbidden", "rate_limited", "too_large", ...).
  void refused(const std::string& endpoint, const std::string& code);
  // A connection the ZAP handler turned away, by reason ("client key not allowed", ...).
  void handshake_refused(const std::string& reason);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace dispatch::metrics
