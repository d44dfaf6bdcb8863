// Keeping the store's threads on chosen CPUs (`dispatcherd --storage-cpus`).
//
// The store's work (group commits, RocksDB's flushes and compactions, queries) comes in bursts
// that need no quick answer, while a request's path (ZeroMQ, the I/O thread, the dispatcher)
// waits on every wake-up. On a small machine the kernel often queues a woken request thread
// behind a flush on the same core; restricting the store's threads to their own CPUs leaves the
// others to the request path. Off by default: which CPUs to give up is the operator's call.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "persistence/status.hpp"

namespace dispatch::persistence {

// Parses a CPU list as taskset(1) and /proc write them: "3", "0,2", "1-3,6". On success `cpus`
// is sorted without repeats. Every CPU must be one this process may run on; `error` says which
// is not, or what is malformed.
bool parse_cpu_list(std::string_view text, std::vector<int>& cpus, std::string& error);

// Restricts the calling thread to `cpus`; an empty list leaves it alone.
status pin_this_thread(const std::vector<int>& cpus);

}  // namespace dispatch::persistence
