// What a running handler can learn from, and ask of, the agent about its one job.
//
// The agent keeps a job_controller per job and hands the handler a job_control; both refer to
// the same shared state, so copies of a job_control (e.g. given to a helper thread) stay valid
// and see the same job, even after the handler returned.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <utility>

namespace dispatch::worker {

namespace detail {
struct job_state;
}

// The longest lease extension the protocol carries ("extend_ms" <= 604800000, one week).
inline constexpr std::chrono::milliseconds max_lease_extension{604'800'000};

class job_control {
 public:
  // True once the agent asked the job to end early: the dispatcher cancelled the task, or the
  // agent is being stopped a second time. Never goes back to false. Lock-free; fine to poll.
  bool stop_requested() const noexcept;

  // Waits up to `timeout`; returns true as soon as (or if already) a stop was requested, false
  // when the whole timeout elapsed without one.
  bool wait_for(std::chrono::milliseconds timeout) const;

  // Asks the dispatcher to let the lease of this job end `duration` from now instead of when it
  // was due; 0 asks for the task's own timeout again (see job::timeout). Durations above
  // max_lease_extension are clamped to it; a negative one throws std::invalid_argument.
  // Never blocks on the network: the request is queued and the agent loop, woken at once, sends
  // it; the dispatcher's answer is only logged. A request made while an earlier one still waits
  // to be sent replaces it. Thread-safe. Also clears lease_expiring(): the warning has been
  // acted upon. Without an agent (a job_controller without a sink) it only clears the warning.
  void extend_lease(std::chrono::milliseconds duration);

  // True once the dispatcher warned that the lease of this job ends soon, until the next
  // extend_lease() call. The agent never extends a lease by itself, so that a hung handler
  // times out: a handler still making progress on a long job should check this between steps
  // and extend. Lock-free.
  bool lease_expiring() const noexcept;

 private:
  friend class job_controller;
  explicit job_control(std::shared_ptr<detail::job_state> state) : state_(std::move(state)) {}
  std::shared_ptr<detail::job_state> state_;
};

// The agent's side of one job; also lets tests and embedders call a handler directly.
class job_controller {
 public:
  // Receives every extend_lease() request, on the caller's thread, already validated and
  // clamped. Must be thread-safe; may be empty (requests are then dropped).
  using extend_sink = std::function<void(std::chrono::milliseconds)>;

  explicit job_controller(extend_sink on_extend = {});

  job_control control() const { return job_control(state_); }

  // Idempotent; wakes every wait_for() in progress. Not async-signal-safe (takes a mutex).
  void request_stop();
  bool stop_requested() const noexcept;

  // Makes lease_expiring() true.
  void warn_lease_expiring() noexcept;

 private:
  std::shared_ptr<detail::job_state> state_;
};

}  // namespace dispatch::worker
