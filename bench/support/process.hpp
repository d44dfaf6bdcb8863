// Processes the benchmarks start (dispatcherd, beanstalkd), scratch directories, free ports, and
// what /proc says about a process.
//
// A benchmark must never leave a daemon behind: the destructor stops its child (SIGTERM, then
// SIGKILL), and the child is also told by the kernel to die with the bench (PR_SET_PDEATHSIG),
// which covers the exits no destructor sees (SIGKILL of the bench, an uncaught signal).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/free_ports.hpp"
#include "tests/support/temp_dir.hpp"

namespace dispatch::bench {

// The tests' free ports and scratch directories serve the benchmarks as they are.
using testing::free_ports;
using scratch_dir = testing::temp_dir;

class child_process {
 public:
  // Starts argv[0] (an absolute path) with stdout and stderr appended to `log_path`.
  // Must be called from a thread that outlives the child (the main thread): the kernel's
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
  // The last `bytes` of the log, for error messages.
  std::string log_tail(std::size_t bytes = 2000) const;

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string log_path_;
};

// Polls `condition` every `step` until it holds or `timeout` passes; returns its last value.
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = std::chrono::milliseconds(5));

// From /proc/<pid>/status: resident set size in bytes (0 if unreadable).
std::uint64_t resident_bytes(pid_t pid);
// From /proc/<pid>/stat: user + system CPU time in seconds (0 if unreadable).
double cpu_seconds(pid_t pid);

// Raises the soft limit of open files to the hard limit; thousands of connections need it, and
// children started afterwards inherit it.
void raise_open_file_limit();

}  // namespace dispatch::bench
