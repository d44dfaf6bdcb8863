// How much CPU time the hypervisor took from this machine while a benchmark ran ("steal" in
// /proc/stat). On a shared virtual machine it is the main reason one binary's figures differ
// from hour to hour, so every result says how contended its host was.
#pragma once

#include <cstdint>
#include <optional>

namespace dispatch::bench {

// The machine's CPU time so far (all CPUs, clock ticks): all of it, and the part stolen.
struct cpu_times {
  std::uint64_t total = 0;
  std::uint64_t steal = 0;
};

// Read from the "cpu" line of /proc/stat; nullopt where there is none (not Linux).
std::optional<cpu_times> read_cpu_times();

// The stolen share of the CPU time between two readings, in percent; nullopt if either is
// missing or no time passed.
std::optional<double> steal_percent(const std::optional<cpu_times>& from,
                                    const std::optional<cpu_times>& to);

}  // namespace dispatch::bench
