// The tasks every section moves: a fixed project and type, random priorities, and a payload
// whose first 8 bytes carry the steady_clock time of the submit (in ns) so that a worker on the
// same machine can tell how long the task took to reach it.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/messages.hpp"

namespace dispatch::bench {

using bench_clock = std::chrono::steady_clock;

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(bench_clock::now().time_since_epoch())
      .count();
}

constexpr std::string_view bench_project = "bench";
constexpr std::string_view bench_type = "bench";
constexpr int priority_levels = 10;  // priorities 0..9

// Payload of `size` bytes (>= 8) stamped with `stamp_ns`.
std::string stamped_payload(std::size_t size, std::int64_t stamp_ns);
// The stamp of a payload made by stamped_payload (0 if it is too short).
std::int64_t payload_stamp(std::string_view payload);

// Deterministic random priorities, so that every system in a comparison gets the same sequence.
class priority_source {
 public:
  explicit priority_source(std::uint32_t seed = 42) : engine_(seed) {}
  int next() { return dist_(engine_); }

 private:
  std::mt19937 engine_;
  std::uniform_int_distribution<int> dist_{0, priority_levels - 1};
};

// `count` task specs for one submit, all stamped now.
std::vector<protocol::task_spec> make_specs(std::size_t count, std::size_t payload,
                                            priority_source& priorities);

}  // namespace dispatch::bench
