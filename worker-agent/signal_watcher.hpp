// Turns SIGINT and SIGTERM into a callback on an ordinary thread, so that no code runs in a
// signal handler: the signals are blocked in every thread and one thread collects them with
// sigwait.
#pragma once

#include <atomic>
#include <functional>
#include <thread>

namespace dispatch::worker {

class signal_watcher {
 public:
  // Blocks SIGINT and SIGTERM in the calling thread, and so in every thread it creates later:
  // construct it before any other thread exists. `on_signal` gets the signal number and runs on
  // the watcher's thread, once per signal received.
  explicit signal_watcher(std::function<void(int)> on_signal);
  // Stops and joins the watcher thread; the signals stay blocked.
  ~signal_watcher();
  signal_watcher(const signal_watcher&) = delete;
  signal_watcher& operator=(const signal_watcher&) = delete;

 private:
  void watch();

  std::function<void(int)> on_signal_;
  std::atomic<bool> closing_{false};
  std::thread thread_;
};

}  // namespace dispatch::worker
