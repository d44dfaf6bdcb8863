// A cooperative stop request shared between the agent and one running job.
//
// The agent keeps the stop_source; the handler receives a stop_token and either polls
// stop_requested() between steps or waits with wait_for(), which returns early as soon as a stop
// is requested. Copies of a token or source all refer to the same shared state.
#pragma once

#include <chrono>
#include <memory>

namespace dispatch::worker {

namespace detail {
struct stop_state;
}

class stop_token {
 public:
  // True once the owning stop_source asked the job to stop. Never goes back to false.
  bool stop_requested() const noexcept;

  // Waits up to `timeout`; returns true as soon as (or if already) a stop was requested, false
  // when the whole timeout elapsed without one.
  bool wait_for(std::chrono::milliseconds timeout) const;

 private:
  friend class stop_source;
  explicit stop_token(std::shared_ptr<detail::stop_state> state) : state_(std::move(state)) {}
  std::shared_ptr<detail::stop_state> state_;
};

class stop_source {
 public:
  stop_source();

  stop_token token() const { return stop_token(state_); }

  // Idempotent; wakes every wait_for() in progress. Not async-signal-safe (takes a mutex).
  void request_stop();
  bool stop_requested() const noexcept;

 private:
  std::shared_ptr<detail::stop_state> state_;
};

}  // namespace dispatch::worker
