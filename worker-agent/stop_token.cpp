#include "worker-agent/stop_token.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace dispatch::worker::detail {

struct stop_state {
  // The flag is atomic so that stop_requested() stays lock-free for handlers polling it in a
  // tight loop; the mutex only serves the condition variable.
  std::atomic<bool> stopped{false};
  std::mutex mutex;
  std::condition_variable changed;
};

}  // namespace dispatch::worker::detail

namespace dispatch::worker {

bool stop_token::stop_requested() const noexcept {
  return state_->stopped.load(std::memory_order_acquire);
}

bool stop_token::wait_for(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(
      lock, timeout, [this] { return state_->stopped.load(std::memory_order_acquire); });
}

stop_source::stop_source() : state_(std::make_shared<detail::stop_state>()) {}

void stop_source::request_stop() {
  {
    // Setting the flag under the mutex closes the window between a waiter's predicate check and
    // its sleep, so no wake-up can be lost.
    std::lock_guard lock(state_->mutex);
    state_->stopped.store(true, std::memory_order_release);
  }
  state_->changed.notify_all();
}

bool stop_source::stop_requested() const noexcept {
  return state_->stopped.load(std::memory_order_acquire);
}

}  // namespace dispatch::worker
