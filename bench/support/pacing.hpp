// A steady offered rate, for the latency section's producers (through the daemon and through
// the ZeroMQ floor alike, so that both see the same arrivals).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <thread>

#include "bench/support/workload.hpp"

namespace dispatch::bench {

// Up to `tasks` tasks at `rate` tasks/s: every millisecond calls send(n) with the n tasks due by
// then (at most 10,000 a call; 1,000/s is one task a call, 10,000/s ten), then between() (to read
// replies), until all are sent.
template <class Send, class Between>
void pace(double rate, std::size_t tasks, Send send, Between between) {
  constexpr std::size_t max_per_call = 10'000;
  std::size_t sent = 0;
  const auto start = bench_clock::now();
  auto next_tick = start;
  while (sent < tasks) {
    const double elapsed = std::chrono::duration<double>(bench_clock::now() - start).count();
    const auto due = std::min<std::size_t>(tasks, static_cast<std::size_t>(rate * elapsed) + 1);
    if (due > sent) {
      const std::size_t n = std::min(due - sent, max_per_call);
      send(n);
      sent += n;
    }
    between();
    next_tick += std::chrono::milliseconds(1);
    std::this_thread::sleep_until(next_tick);
  }
}

}  // namespace dispatch::bench
