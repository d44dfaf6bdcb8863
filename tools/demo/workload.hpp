// The demo's batch of tasks: a fixed mix over a few projects, the same on every run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "protocol/messages.hpp"

namespace dispatch::demo {

// One project of the mix: its share of the batch, its priority range and what its tasks do.
struct project_profile {
  std::string name;
  std::uint32_t share_percent = 0;  // of all tasks; the shares add up to 100
  std::int32_t min_priority = 0;
  std::int32_t max_priority = 0;
  std::uint32_t min_sleep_ms = 0;  // `sleep` tasks sleep min..max ms
  std::uint32_t max_sleep_ms = 0;
  std::uint32_t echo_percent = 0;  // of this project's tasks; the rest are `sleep`
};

// "web" (interactive, high priority, short), "reports" (middle), "ml" (background, longer).
std::vector<project_profile> default_profiles();

// `count` tasks drawn from `profiles` with a pseudo-random generator seeded by `seed`. The same
// arguments give the same tasks on every platform, so runs can be compared with each other.
std::vector<protocol::task_spec> make_workload(const std::vector<project_profile>& profiles,
                                               std::uint32_t count, std::uint32_t seed);

}  // namespace dispatch::demo
