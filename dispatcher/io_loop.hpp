// The I/O side of the thread that serves the sockets and also runs actors
// (actors/io_driven_scheduler.hpp). The thread waits here whenever it has no job, so a request
// reaches the dispatcher actor, and its reply the socket, without passing to another thread.
#pragma once

namespace dispatch {

class io_loop {
 public:
  virtual ~io_loop() = default;
  // Waits until input may be ready on the loop's own descriptors or on `wake_fd`, or until the
  // loop's next deadline; with `block` false, only looks. True when `wake_fd` is readable.
  virtual bool wait(bool block, int wake_fd) = 0;
  // True when output waits to be sent (replies queued): the serving thread then takes a turn
  // before its next job rather than after the jobs queued. Cheap: called between jobs.
  virtual bool output_waiting() const = 0;
  // Handles what the last wait found, without blocking: queued replies go out, requests are read
  // and handed on, held requests that are due are handed on.
  virtual void handle() = 0;
  // Sends the queued replies at once, from a job the serving thread is running (one about to
  // spend a moment on work nobody waits for). True when no request is waiting to be read, i.e.
  // that work would hold nobody up.
  virtual bool send_output_now() = 0;
  // Sends the replies still queued and closes the sockets. The loop is not used again.
  virtual void close() = 0;
};

}  // namespace dispatch
