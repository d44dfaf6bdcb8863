// Threads of a load generator: a stop flag, the first error of any thread, and a completion
// counter the main thread can wait on without hanging forever when something broke.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dispatch::bench {

class thread_group {
 public:
  thread_group() = default;
  ~thread_group();  // stops and joins; an error nobody collected is dropped
  thread_group(const thread_group&) = delete;
  thread_group& operator=(const thread_group&) = delete;

  // Runs `body` on a new thread; an exception it throws is kept and stops every thread.
  void spawn(std::function<void()> body);
  bool stopping() const { return stop_.load(std::memory_order_relaxed); }
  // Rethrows the first error of a thread, if any (the threads keep running).
  void check();
  // Sets the stop flag, joins every thread, and rethrows the first error. Idempotent.
  void stop();

 private:
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

// The lifecycle runs the K workers of either system on at most this many bench threads, each
// polling the connections of its share of them: more load-generator threads than the machine
// has cores only add context switches, and the daemon under test pays for them.
constexpr std::size_t max_worker_threads = 4;

// Splits `workers` into at most `threads` (0: one per worker) contiguous shares of nearly
// equal size and calls share(first, count) for each.
void split_workers(std::size_t workers, std::size_t threads,
                   const std::function<void(std::size_t first, std::size_t count)>& share);

// Completions counted from several threads, with the time of the latest one.
class completion_counter {
 public:
  // Records `n` completions at steady_clock ns `at`.
  void add(std::int64_t at, std::uint64_t n = 1);
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  // Waits until `n` completions; returns the time of the latest. Calls `check` every
  // millisecond (to surface a thread's error) and throws when the count has not moved for
  // `stall`.
  std::int64_t wait(std::uint64_t n, std::chrono::seconds stall,
                    const std::function<void()>& check);

 private:
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::int64_t> last_ns_{0};
};

}  // namespace dispatch::bench
