// How agent::stop() reaches the agent loop: a counter of stop requests plus a self-pipe the loop
// polls next to its zmq sockets. Requesting only does an atomic increment and a write(2), both
// async-signal-safe, so stop() can be called from anywhere.
#pragma once

#include <atomic>

#include "worker-agent/wake_pipe.hpp"

namespace dispatch::worker {

class stop_signal {
 public:
  stop_signal() = default;  // throws std::system_error when the pipe cannot be created

  void request() noexcept;
  int requests() const noexcept { return requests_.load(std::memory_order_acquire); }

  // Readable while a request is not yet drained; for the loop's poll.
  int fd() const noexcept { return wake_.fd(); }
  void drain() noexcept { wake_.drain(); }

 private:
  std::atomic<int> requests_{0};
  wake_pipe wake_;
};

}  // namespace dispatch::worker
