// A wake-up another thread can poll for: an eventfd that signal() makes readable and reset()
// makes quiet again. Several signals before a reset read as one.
#pragma once

namespace dispatch {

class wake_signal {
 public:
  wake_signal();  // throws std::runtime_error if the kernel refuses the eventfd
  ~wake_signal();
  wake_signal(const wake_signal&) = delete;
  wake_signal& operator=(const wake_signal&) = delete;

  // For poll(): readable between a signal() and the next reset().
  int fd() const { return fd_; }
  void signal();
  void reset();

 private:
  int fd_;
};

}  // namespace dispatch
