// The two orders the scheduler keeps sorted: lanes by urgency and workers by load.
#pragma once

#include <cstdint>
#include <tuple>

#include "protocol/task.hpp"

namespace dispatch::policy::detail {

// Stride scheduling: each dispatch advances its project's pass by stride_scale / weight, and the
// lowest pass goes first at equal priority. 2^32 keeps the stride exact enough for any uint32
// weight while leaving 2^30 dispatches of a weight-1 project before passes need renormalizing.
constexpr std::uint64_t stride_scale = std::uint64_t{1} << 32;
constexpr std::uint64_t pass_limit = std::uint64_t{1} << 62;

constexpr std::uint64_t stride_of(std::uint32_t weight) {
  return stride_scale / (weight == 0 ? 1 : weight);
}

// Position of a non-empty lane in the urgency index, computed from its head task.
struct lane_key {
  std::int32_t priority = 0;
  std::uint64_t pass = 0;  // of the lane's project
  task_id head = 0;
  std::uint32_t lane = 0;

  friend bool operator<(const lane_key& a, const lane_key& b) {
    // Priority descending, then fair share, then FIFO; the lane only breaks exact ties.
    return std::tie(b.priority, a.pass, a.head, a.lane) <
           std::tie(a.priority, b.pass, b.head, b.lane);
  }
};

// Position of a worker with free slots in a per-type candidate set: least loaded first, exact
// comparison of running / capacity without floating point, then least recently assigned, then
// registered earliest.
struct load_key {
  std::uint32_t running = 0;
  std::uint32_t capacity = 1;  // > 0 for any listed worker
  std::uint64_t last_assigned = 0;
  std::uint64_t registered = 0;  // unique
  std::uint32_t worker = 0;

  friend bool operator<(const load_key& a, const load_key& b) {
    const std::uint64_t lhs = std::uint64_t{a.running} * b.capacity;
    const std::uint64_t rhs = std::uint64_t{b.running} * a.capacity;
    if (lhs != rhs) return lhs < rhs;
    return std::tie(a.last_assigned, a.registered) < std::tie(b.last_assigned, b.registered);
  }
};

}  // namespace dispatch::policy::detail
