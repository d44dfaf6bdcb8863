// One actor per connected worker: its liveness clock. The dispatcher records every heartbeat in
// the worker's heartbeat_clock (and answers the heartbeat itself, since the answer carries orders
// and lease warnings drawn from the dispatcher's state). When no heartbeat arrived for
// liveness * heartbeat, the actor tells the dispatcher the worker is lost and stops; the
// dispatcher then hands the worker's tasks back.
//
// The clock is shared memory rather than a message per heartbeat: a thousand idle workers would
// otherwise cost a thousand actor wake-ups a second. The actor wakes only when the worker could
// have run out of time (last heartbeat + liveness * heartbeat, rounded up to a quarter
// heartbeat so that the timers of many workers share one wake-up), so a healthy worker costs one
// timer every liveness - 1 heartbeats, and a silent one is found lost at most a quarter
// heartbeat late.
//
//   to the dispatcher: (lost_atom, worker id, this actor)
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/fwd.hpp>

namespace dispatch::actors {

struct liveness_settings {
  std::chrono::milliseconds heartbeat{1000};
  std::uint32_t liveness = 3;
};

// Steady-clock time of the worker's last sign of life, in ns since the clock's epoch.
class heartbeat_clock {
 public:
  heartbeat_clock() { beat(); }
  void beat() {
    last_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                std::memory_order_relaxed);
  }
  std::chrono::steady_clock::time_point last() const {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(last_.load(std::memory_order_relaxed)));
  }

 private:
  std::atomic<std::chrono::steady_clock::rep> last_{0};
};

caf::actor spawn_worker(caf::local_actor* dispatcher, std::string worker,
                        std::shared_ptr<const heartbeat_clock> clock, liveness_settings settings);

}  // namespace dispatch::actors
