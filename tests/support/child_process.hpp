// Child processes started by the integration tests and the benchmarks (dispatcherd, worker-agent,
// dispatchctl, beanstalkd), with stdout and stderr appended to a log file.
//
// A run must never leave a process behind: the destructor stops the child (SIGTERM, then SIGKILL),
// and the kernel is told to kill the child when its parent dies (PR_SET_PDEATHSIG), which covers
// the exits no destructor sees (SIGKILL of the test or bench, a crash).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace dispatch::testing {

class child_process {
 public:
  // Starts argv[0] (a path) with stdin from /dev/null and stdout and stderr appended to
  // `log_path`. Call it from a thread that outlives the child (the main thread): the kernel's
  // parent-death signal fires when the thread that forked exits, not the process.
  child_process(std::vector<std::string> argv, const std::string& log_path);
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int sig) const;
  // Waits for the exit; the exit code (128 + signal when killed), nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // SIGTERM, and SIGKILL if it has not exited within `grace`; false if it had to be killed.
  bool stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // The whole log, and its last `bytes` (for error messages).
  std::string log() const;
  std::string log_tail(std::size_t bytes = 2000) const;

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string log_path_;
};

// Polls `condition` every `step` until it holds or `timeout` passes; returns its last value.
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = std::chrono::milliseconds(10));

}  // namespace dispatch::testing
