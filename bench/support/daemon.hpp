// A real dispatcherd for a benchmark: free loopback ports, its own data directory, the metrics
// and events endpoints off (so that runs never collide on their fixed default ports), and
// "ready" meaning that the admin endpoint answers `stats`.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "bench/support/process.hpp"
#include "bench/support/wire_client.hpp"

namespace dispatch::bench {

struct daemon_options {
  std::string binary;              // dispatcherd to run
  std::string durability = "wal";  // "wal" | "fsync"
  std::string data_dir;            // empty: a fresh directory inside the daemon's scratch dir
  std::vector<std::string> extra_args;
};

class dispatcher_daemon {
 public:
  // Starts the daemon and waits until it is ready (throws with its log if it is not).
  explicit dispatcher_daemon(daemon_options options);
  ~dispatcher_daemon();
  dispatcher_daemon(const dispatcher_daemon&) = delete;
  dispatcher_daemon& operator=(const dispatcher_daemon&) = delete;

  // SIGTERM and wait for the exit (data stays); after 20 s SIGKILL, and false.
  bool stop();
  // Starts again on the same ports and data directory; returns when ready.
  void start();
  // The two halves of start(), for measuring what happens while the daemon starts (recovery):
  // spawn() returns at once, wait_ready() when the admin endpoint answers.
  void spawn();
  void wait_ready();

  pid_t pid() const { return process_ ? process_->pid() : -1; }
  const std::string& work_endpoint() const { return work_; }
  const std::string& admin_endpoint() const { return admin_; }
  const std::string& data_dir() const { return data_; }
  // Tokens of the current data directory (read when the daemon became ready).
  const credentials& tokens() const { return tokens_; }
  // The last start: from spawning the process to its first `stats` answer.
  std::chrono::nanoseconds last_start_duration() const { return start_duration_; }
  std::chrono::steady_clock::time_point last_spawn() const { return spawned_; }

  // The daemon's `stats` (admin token).
  protocol::stats stats();

 private:
  daemon_options options_;
  scratch_dir scratch_;
  std::string data_;
  std::string work_, admin_;
  int starts_ = 0;
  zmq::context_t context_{1};
  credentials tokens_;
  std::chrono::nanoseconds start_duration_{0};
  std::chrono::steady_clock::time_point spawned_;
  std::unique_ptr<child_process> process_;
};

}  // namespace dispatch::bench
