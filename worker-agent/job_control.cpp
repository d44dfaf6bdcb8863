#include "worker-agent/job_control.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>

#include "worker-agent/stop_token.hpp"

namespace dispatch::worker::detail {

struct job_state {
  explicit job_state(job_controller::extend_sink sink) : on_extend(std::move(sink)) {}

  stop_source stop;
  std::atomic<bool> expiring{false};
  // Set once at construction and never changed, so calling it needs no lock here; the sink
  // itself is thread-safe.
  const job_controller::extend_sink on_extend;
};

}  // namespace dispatch::worker::detail

namespace dispatch::worker {

bool job_control::stop_requested() const noexcept { return state_->stop.stop_requested(); }

bool job_control::wait_for(std::chrono::milliseconds timeout) const {
  return state_->stop.token().wait_for(timeout);
}

void job_control::extend_lease(std::chrono::milliseconds duration) {
  if (duration < std::chrono::milliseconds(0))
    throw std::invalid_argument("extend_lease: the duration must not be negative");
  // Cleared before queueing, so that a warning that races with this call is kept: at worst the
  // handler extends once more, never once too few.
  state_->expiring.store(false, std::memory_order_release);
  if (state_->on_extend) state_->on_extend(std::min(duration, max_lease_extension));
}

bool job_control::lease_expiring() const noexcept {
  return state_->expiring.load(std::memory_order_acquire);
}

job_controller::job_controller(extend_sink on_extend)
    : state_(std::make_shared<detail::job_state>(std::move(on_extend))) {}

void job_controller::request_stop() { state_->stop.request_stop(); }

bool job_controller::stop_requested() const noexcept { return state_->stop.stop_requested(); }

void job_controller::warn_lease_expiring() noexcept {
  state_->expiring.store(true, std::memory_order_release);
}

}  // namespace dispatch::worker
