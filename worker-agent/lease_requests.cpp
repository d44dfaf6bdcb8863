#include "worker-agent/lease_requests.hpp"

namespace dispatch::worker {

void lease_requests::push(const extend_request& r) {
  {
    std::lock_guard lock(mutex_);
    waiting_.insert_or_assign({r.task, r.attempt}, r.duration);
  }
  wake_.notify();
}

std::vector<extend_request> lease_requests::take() {
  // Drained before reading under the lock: a push after the drain leaves the pipe readable, so
  // its request is taken now or on the next wake-up, never left behind.
  wake_.drain();
  std::lock_guard lock(mutex_);
  std::vector<extend_request> out;
  out.reserve(waiting_.size());
  for (const auto& [lease, duration] : waiting_)
    out.push_back({lease.first, lease.second, duration});
  waiting_.clear();
  return out;
}

}  // namespace dispatch::worker
