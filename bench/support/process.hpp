// Processes the benchmarks start (dispatcherd, beanstalkd), scratch directories, free ports, and
// what /proc says about a process. The tests' child processes (they never outlive the bench),
// free ports and scratch directories serve the benchmarks as they are.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "tests/support/child_process.hpp"
#include "tests/support/free_ports.hpp"
#include "tests/support/temp_dir.hpp"

namespace dispatch::bench {

using testing::child_process;
using testing::free_ports;
using testing::wait_until;
using scratch_dir = testing::temp_dir;

// From /proc/<pid>/status: resident set size in bytes (0 if unreadable).
std::uint64_t resident_bytes(pid_t pid);
// From /proc/<pid>/stat: user + system CPU time in seconds (0 if unreadable).
double cpu_seconds(pid_t pid);

// Raises the soft limit of open files to the hard limit; thousands of connections need it, and
// children started afterwards inherit it.
void raise_open_file_limit();

}  // namespace dispatch::bench
