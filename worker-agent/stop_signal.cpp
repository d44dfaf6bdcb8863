#include "worker-agent/stop_signal.hpp"

namespace dispatch::worker {

void stop_signal::request() noexcept {
  // Count first: the loop reads the count after being woken.
  requests_.fetch_add(1, std::memory_order_acq_rel);
  wake_.notify();
}

}  // namespace dispatch::worker
