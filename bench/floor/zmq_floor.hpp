// The transport floor: the lifecycle's messages as plain ZeroMQ round trips, with no codec, no
// store and no scheduling. A ROUTER "broker" thread in the bench process keeps a FIFO of
// payloads; the producer sends submits of `batch` payloads in one frame (acknowledged by one
// frame), workers send a fetch (answered by up to `capacity` payloads in one frame, or parked
// until some arrive) and one complete frame per job (acknowledged by one frame each) - the
// same frames per task as the dispatch protocol, over tcp loopback.
#pragma once

#include <cstddef>
#include <cstdint>

#include "bench/support/worker_fleet.hpp"  // latency_samples

namespace dispatch::bench {

struct zmq_floor_load {
  std::size_t tasks = 0;
  std::size_t batch = 1000;
  std::size_t in_flight = 4;
  std::size_t payload = 100;
  std::size_t workers = 1;
  std::uint32_t capacity = 8;
};

// Seconds from the first submit to the last complete acknowledged.
double run_zmq_floor(const zmq_floor_load& load);

// The latency section's pattern on the same broker: every millisecond one submit frame of the
// tasks due at `rate`, each payload stamped when its frame is built; `workers` workers with a
// fetch of up to `capacity` outstanding. The broker has a ZeroMQ context of its own with one
// I/O thread, as `dispatcherd` has, so a task crosses as many threads as through the daemon
// except the store's writer.
struct zmq_latency_load {
  double rate = 10'000;  // tasks per second
  std::size_t tasks = 0;
  std::size_t payload = 100;
  std::size_t workers = 4;
  std::uint32_t capacity = 8;
};

// Per task: stamp -> a worker got the job, and stamp -> the ok to its complete.
latency_samples run_zmq_latency_floor(const zmq_latency_load& load);

}  // namespace dispatch::bench
