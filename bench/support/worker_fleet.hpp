// Workers of the dispatch protocol inside the bench process, each its own DEALER connection.
//
// A worker registers with a capacity, keeps one long-poll `fetch` (max = capacity) outstanding,
// completes every job at once (the bench measures the dispatcher, not work), and heartbeats at
// the interval the daemon announced. Several workers may share one thread (1,000 idle workers
// need not be 1,000 threads): each thread polls all of its connections.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "bench/support/threads.hpp"

namespace dispatch::bench {

struct fleet_options {
  std::string endpoint;
  std::string token;  // worker token, empty for none
  std::size_t workers = 1;
  std::size_t threads = 0;  // 0: one per worker
  std::uint32_t capacity = 8;
  std::uint32_t wait_ms = 10'000;  // long poll of each fetch
  std::string id_prefix = "bench-worker";
  // Time of the first job and completion acknowledgements: per-task latencies are recorded.
  bool record_latency = false;
  // Register, then wait until stop: for registration-only experiments (no fetch is sent).
  bool fetch = true;
  // One complete per job instead of one report per batch of jobs received together.
  bool complete_each = false;
};

struct latency_samples {
  std::vector<double> hold_ns;  // submit stamp -> job received by the worker
  std::vector<double> done_ns;  // submit stamp -> completion acknowledged
  std::vector<std::int64_t> hold_stamp_ns;  // the submit stamp of each hold_ns entry

  // A job submitted at `stamp` reached its worker at `at` (both now_ns()).
  void held(std::int64_t stamp, std::int64_t at) {
    hold_ns.push_back(static_cast<double>(at - stamp));
    hold_stamp_ns.push_back(stamp);
  }
  // A job submitted at `stamp` had its completion acknowledged at `at`.
  void done(std::int64_t stamp, std::int64_t at) {
    done_ns.push_back(static_cast<double>(at - stamp));
  }
  void append(const latency_samples& more) {
    hold_ns.insert(hold_ns.end(), more.hold_ns.begin(), more.hold_ns.end());
    done_ns.insert(done_ns.end(), more.done_ns.begin(), more.done_ns.end());
    hold_stamp_ns.insert(hold_stamp_ns.end(), more.hold_stamp_ns.begin(),
                         more.hold_stamp_ns.end());
  }
};

class worker_fleet {
 public:
  // Starts the threads and returns once every worker is registered (throws after 300 s: a daemon
  // may be recovering).
  worker_fleet(zmq::context_t& context, fleet_options options);
  ~worker_fleet() = default;  // threads_ stops and joins
  worker_fleet(const worker_fleet&) = delete;
  worker_fleet& operator=(const worker_fleet&) = delete;

  // Completion acknowledgements received so far, and jobs received.
  std::uint64_t completed() const { return completed_.count(); }
  std::uint64_t received() const { return received_.load(std::memory_order_relaxed); }
  // Blocks until `n` completions are acknowledged; returns the steady_clock ns when the n-th
  // arrived. Throws if a worker failed or nothing moved for `stall` (a broken run must not
  // hang the suite).
  std::int64_t wait_completed(std::uint64_t n, std::chrono::seconds stall);
  // steady_clock ns when the first job of this fleet arrived (0 if none yet).
  std::int64_t first_job_ns() const { return first_job_ns_.load(); }

  // Stops and joins the threads; rethrows the first worker error. Idempotent.
  void stop() { threads_.stop(); }
  // Per-task latencies of every worker (after stop()).
  latency_samples take_latencies();

 private:
  void run(std::size_t first, std::size_t count);

  zmq::context_t& context_;
  fleet_options options_;
  std::atomic<std::uint64_t> registered_{0};
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::int64_t> first_job_ns_{0};
  completion_counter completed_;
  std::mutex mutex_;  // guards latencies_
  latency_samples latencies_;
  thread_group threads_;  // last: stopped and joined before the members its threads use
};

}  // namespace dispatch::bench
