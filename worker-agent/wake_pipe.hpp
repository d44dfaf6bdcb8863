// A self-pipe that lets any thread (or a signal handler) wake the agent loop's poll. The loop
// polls fd() next to its zmq sockets and drains the pipe before looking at what changed.
#pragma once

#include "worker-agent/unique_fd.hpp"

namespace dispatch::worker {

class wake_pipe {
 public:
  wake_pipe();  // throws std::system_error when the pipe cannot be created

  // Only a write(2): async-signal-safe and never blocks.
  void notify() noexcept;

  // Readable while a notification is not yet drained.
  int fd() const noexcept { return read_end_.get(); }
  void drain() noexcept;

 private:
  unique_fd read_end_;
  unique_fd write_end_;
};

}  // namespace dispatch::worker
