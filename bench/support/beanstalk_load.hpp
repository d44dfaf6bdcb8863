// The lifecycle load of the dispatcher benchmark, driven against beanstalkd instead: one
// producer pipelining its puts, K workers completing (deleting) every job at once.
//
// Capacity: a dispatch worker of capacity C holds up to C jobs and asks for up to C in one
// fetch. beanstalkd answers the commands of one connection strictly in order, and a blocking
// reserve holds up every command behind it, so one connection cannot keep C reserves waiting
// and still get its deletes through. A worker of capacity C is therefore C connections, each
// holding at most one job: reserve, then `delete` and the next reserve in one write. The workers
// share at most max_worker_threads threads, like the dispatch workers of the same run.
#pragma once

#include <cstddef>
#include <cstdint>

#include "bench/support/workload.hpp"

namespace dispatch::bench {

struct beanstalk_load {
  int port = 0;
  std::size_t tasks = 0;
  std::size_t batch = 1000;   // puts per write
  std::size_t in_flight = 4;  // batches written before their replies are all read
  std::size_t payload = 100;
  std::size_t workers = 1;
  std::uint32_t capacity = 8;  // connections per worker
};

// Seconds from the first put to the last DELETED.
double run_beanstalk_load(const beanstalk_load& load);

}  // namespace dispatch::bench
