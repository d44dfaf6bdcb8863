// A fixed set of job threads. The agent loop submits at most one job per free thread; each
// thread runs the job's handler and reports the outcome through its own PUSH socket connected
// to the loop's PULL socket, so the loop wakes up the moment a job ends.
//
// Every job gets its own job_controller from submit() until its handler returned, so the loop
// can stop one job (a cancelled task) or all of them (a second stop()), and pass on lease
// warnings, whether the job is still queued or already running.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "worker-agent/agent.hpp"

namespace dispatch::worker {

class job_pool {
 public:
  // Called by extend_lease() on the handler's thread (so it must be thread-safe) with the lease
  // the job holds. It may outlive the pool inside a job_control a handler kept.
  using extend_sink =
      std::function<void(task_id, std::uint32_t attempt, std::chrono::milliseconds)>;

  // `results_endpoint` is the inproc address the loop's PULL socket binds in `ctx`.
  job_pool(zmq::context_t& ctx, std::string results_endpoint, std::size_t threads,
           extend_sink on_extend);
  // Requests every job to stop, lets it finish and joins the threads.
  ~job_pool();
  job_pool(const job_pool&) = delete;
  job_pool& operator=(const job_pool&) = delete;

  // Never blocks; the job waits for a free thread (the caller keeps the count within capacity).
  void submit(job j, handler h);

  // These act on a job from submit() until its handler returned; unknown leases are ignored.
  void request_stop(task_id task, std::uint32_t attempt);
  void warn_lease_expiring(task_id task, std::uint32_t attempt);

  // Requests every submitted job to stop, and every job submitted later.
  void request_stop_all();

 private:
  using lease = std::pair<task_id, std::uint32_t>;  // unique per job: one attempt, one lease

  struct queued_job {
    job j;
    handler h;
    job_controller controller;
  };

  void shut_down() noexcept;
  void thread_main(zmq::context_t& ctx, const std::string& endpoint);
  static job_outcome run_guarded(const queued_job& q, job_control& control);

  const extend_sink on_extend_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::deque<queued_job> queue_;
  std::map<lease, job_controller> jobs_;  // queued and running
  bool stop_all_ = false;
  bool closing_ = false;
  std::vector<std::thread> threads_;  // last: joined before the members above are destroyed
};

}  // namespace dispatch::worker
