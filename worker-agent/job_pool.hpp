// A fixed set of job threads. The agent loop submits at most one job per free thread; each
// thread runs the job's handler and reports the outcome through its own PUSH socket connected
// to the loop's PULL socket, so the loop wakes up the moment a job ends.
#pragma once

#include <condition_variable>
#include <deque>
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
  // `results_endpoint` is the inproc address the loop's PULL socket binds in `ctx`.
  job_pool(zmq::context_t& ctx, std::string results_endpoint, std::size_t threads);
  // Requests every running job to stop, lets it finish and joins the threads.
  ~job_pool();
  job_pool(const job_pool&) = delete;
  job_pool& operator=(const job_pool&) = delete;

  // Never blocks; the job waits for a free thread (the caller keeps the count within capacity).
  void submit(job j, handler h);

  // Triggers the stop_token of every running and queued job, and of every job submitted later.
  void request_stop_all();

 private:
  struct queued_job {
    job j;
    handler h;
  };

  void shut_down() noexcept;
  void thread_main(zmq::context_t& ctx, const std::string& endpoint);
  static job_outcome run_guarded(const queued_job& q, const stop_token& token);

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::deque<queued_job> queue_;
  // The stop sources of the jobs being run, by (task, attempt): a lease is unique.
  std::map<std::pair<task_id, std::uint32_t>, stop_source> running_;
  bool stop_all_ = false;
  bool closing_ = false;
  std::vector<std::thread> threads_;  // last: joined before the members above are destroyed
};

}  // namespace dispatch::worker
