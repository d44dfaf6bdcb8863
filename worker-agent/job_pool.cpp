#include "worker-agent/job_pool.hpp"

#include <exception>
#include <optional>

#include "worker-agent/result_channel.hpp"

namespace dispatch::worker {

job_pool::job_pool(zmq::context_t& ctx, std::string results_endpoint, std::size_t threads,
                   extend_sink on_extend)
    : on_extend_(std::move(on_extend)) {
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
    for (auto& [id, controller] : jobs_) controller.request_stop();
  }
  work_ready_.notify_all();
  for (auto& t : threads_) t.join();
}

void job_pool::submit(job j, handler h) {
  const lease id{j.id, j.attempt};
  // The sink is copied into the controller rather than reaching it through `this`: a handler
  // may keep its job_control beyond the pool's life.
  job_controller controller([sink = on_extend_, id](std::chrono::milliseconds d) {
    if (sink) sink(id.first, id.second, d);
  });
  {
    std::lock_guard lock(mutex_);
    if (stop_all_) controller.request_stop();
    jobs_.insert_or_assign(id, controller);
    queue_.push_back({std::move(j), std::move(h), std::move(controller)});
  }
  work_ready_.notify_one();
}

void job_pool::request_stop(task_id task, std::uint32_t attempt) {
  std::lock_guard lock(mutex_);
  if (const auto it = jobs_.find({task, attempt}); it != jobs_.end()) it->second.request_stop();
}

void job_pool::warn_lease_expiring(task_id task, std::uint32_t attempt) {
  std::lock_guard lock(mutex_);
  if (const auto it = jobs_.find({task, attempt}); it != jobs_.end())
    it->second.warn_lease_expiring();
}

void job_pool::request_stop_all() {
  std::lock_guard lock(mutex_);
  stop_all_ = true;
  for (auto& [id, controller] : jobs_) controller.request_stop();
}

job_outcome job_pool::run_guarded(const queued_job& q, job_control& control) {
  try {
    return q.h(q.j, control);
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
    std::optional<queued_job> q;
    {
      std::unique_lock lock(mutex_);
      work_ready_.wait(lock, [this] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing and nothing left to run
      q.emplace(std::move(queue_.front()));
      queue_.pop_front();
    }

    job_control control = q->controller.control();
    finished_job done{q->j.id, q->j.attempt, run_guarded(*q, control)};
    {
      std::lock_guard lock(mutex_);
      jobs_.erase({q->j.id, q->j.attempt});
    }
    send_result(push, done);
  }
}

}  // namespace dispatch::worker
