#include "worker-agent/job_pool.hpp"

#include <exception>

#include "worker-agent/result_channel.hpp"

namespace dispatch::worker {

job_pool::job_pool(zmq::context_t& ctx, std::string results_endpoint, std::size_t threads) {
  try {
    threads_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i)
      threads_.emplace_back([this, &ctx, results_endpoint] { thread_main(ctx, results_endpoint); });
  } catch (...) {
    shut_down();  // no destructor runs for a half-built object; the started threads must end
    throw;
  }
}

job_pool::~job_pool() { shut_down(); }

void job_pool::shut_down() noexcept {
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
    stop_all_ = true;
    for (auto& [id, source] : running_) source.request_stop();
  }
  work_ready_.notify_all();
  for (auto& t : threads_) t.join();
}

void job_pool::submit(job j, handler h) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back({std::move(j), std::move(h)});
  }
  work_ready_.notify_one();
}

void job_pool::request_stop_all() {
  std::lock_guard lock(mutex_);
  stop_all_ = true;
  for (auto& [id, source] : running_) source.request_stop();
}

job_outcome job_pool::run_guarded(const queued_job& q, const stop_token& token) {
  try {
    return q.h(q.j, token);
  } catch (const std::exception& e) {
    return {false, std::string("handler threw: ") + e.what(), true};
  } catch (...) {
    return {false, "handler threw an unknown exception", true};
  }
}

void job_pool::thread_main(zmq::context_t& ctx, const std::string& endpoint) {
  // zmq sockets are not thread-safe: this thread's socket is created, used and closed here only.
  zmq::socket_t push(ctx, zmq::socket_type::push);
  // Unsent results are only dropped at destruction, when the loop no longer wants them.
  push.set(zmq::sockopt::linger, 0);
  push.connect(endpoint);

  for (;;) {
    queued_job q;
    stop_source source;
    {
      std::unique_lock lock(mutex_);
      work_ready_.wait(lock, [this] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing and nothing left to run
      q = std::move(queue_.front());
      queue_.pop_front();
      if (stop_all_) source.request_stop();
      running_.emplace(std::pair(q.j.id, q.j.attempt), source);
    }

    finished_job done{q.j.id, q.j.attempt, run_guarded(q, source.token())};
    {
      std::lock_guard lock(mutex_);
      running_.erase(std::pair(q.j.id, q.j.attempt));
    }
    send_result(push, done);
  }
}

}  // namespace dispatch::worker
