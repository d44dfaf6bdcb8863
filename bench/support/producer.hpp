// The producer side of the dispatch protocol: submits of many tasks with several in flight
// (throughput), or a steady offered rate (latency).
#pragma once

#include <cstddef>
#include <cstdint>

#include "bench/support/wire_client.hpp"
#include "bench/support/workload.hpp"

namespace dispatch::bench {

struct submit_timing {
  std::int64_t first_send_ns = 0;  // steady_clock ns when the first submit left
  std::int64_t last_ack_ns = 0;    // when the last `submitted` arrived
};

// Submits `tasks` tasks in submits of `batch`, keeping up to `in_flight` submits unanswered.
// Throws on an error reply or when a reply takes longer than 120 s.
submit_timing submit_all(wire_client& producer, std::size_t tasks, std::size_t batch,
                         std::size_t in_flight, std::size_t payload, priority_source& priorities);

// Submits `tasks` tasks at `rate` tasks/s: every millisecond, one submit of the tasks that are
// due by then (so 1,000/s is one task a submit, 10,000/s ten). Replies are read as they come.
submit_timing submit_paced(wire_client& producer, double rate, std::size_t tasks,
                           std::size_t payload, priority_source& priorities);

}  // namespace dispatch::bench
