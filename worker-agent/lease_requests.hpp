// The path of extend_lease() requests from handlers to the agent loop. Handlers may call
// extend_lease() from any thread (zmq sockets are not thread-safe), so requests go into a
// mutex-guarded map and a self-pipe wakes the loop's poll at once, as results do.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "protocol/task.hpp"
#include "worker-agent/wake_pipe.hpp"

namespace dispatch::worker {

struct extend_request {
  task_id task = 0;
  std::uint32_t attempt = 0;
  std::chrono::milliseconds duration{0};
};

class lease_requests {
 public:
  // Thread-safe. A request for a lease that still has one waiting replaces it: only the latest
  // wish matters, and a handler extending in a loop cannot grow the queue.
  void push(const extend_request& r);

  // Loop thread: drains the wake-up pipe, then returns every waiting request.
  std::vector<extend_request> take();

  // Readable while requests may be waiting; for the loop's poll.
  int fd() const noexcept { return wake_.fd(); }

 private:
  std::mutex mutex_;
  std::map<std::pair<task_id, std::uint32_t>, std::chrono::milliseconds> waiting_;
  wake_pipe wake_;
};

}  // namespace dispatch::worker
