#include "bench/support/threads.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace dispatch::bench {

thread_group::~thread_group() {
  try {
    stop();
  } catch (...) {
    // Unwinding already, or the owner chose not to look: nothing left to report to.
  }
}

void thread_group::spawn(std::function<void()> body) {
  threads_.emplace_back([this, body = std::move(body)] {
    try {
      body();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      stop_ = true;
    }
  });
}

void thread_group::check() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (error_) std::rethrow_exception(error_);
}

void thread_group::stop() {
  stop_ = true;
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  std::lock_guard<std::mutex> lock(mutex_);
  if (error_) {
    auto e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void completion_counter::add(std::int64_t at, std::uint64_t n) {
  // The time is published before the count, so a waiter that sees the n-th completion also
  // sees a time at least as late as it.
  std::int64_t prev = last_ns_.load();
  while (prev < at && !last_ns_.compare_exchange_weak(prev, at)) {
  }
  count_.fetch_add(n);
}

std::int64_t completion_counter::wait(std::uint64_t n, std::chrono::seconds stall,
                                      const std::function<void()>& check) {
  std::uint64_t seen = count();
  auto last_move = std::chrono::steady_clock::now();
  while (true) {
    check();
    const std::uint64_t now_done = count();
    if (now_done >= n) break;
    if (now_done != seen) {
      seen = now_done;
      last_move = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - last_move > stall) {
      throw std::runtime_error("no progress for " + std::to_string(stall.count()) + " s at " +
                               std::to_string(now_done) + " of " + std::to_string(n) +
                               " completions");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return last_ns_.load();
}

void split_workers(std::size_t workers, std::size_t threads,
                   const std::function<void(std::size_t first, std::size_t count)>& share) {
  if (workers == 0) return;
  threads = threads == 0 ? workers : std::min(threads, workers);
  const std::size_t per = (workers + threads - 1) / threads;
  for (std::size_t first = 0; first < workers; first += per)
    share(first, std::min(per, workers - first));
}

}  // namespace dispatch::bench
