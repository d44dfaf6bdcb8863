#include "demo/workload.hpp"

#include <random>

namespace dispatch::demo {
namespace {

// std::uniform_int_distribution differs between standard libraries, while mt19937's output is
// fixed by the standard: a plain modulo keeps the batch identical everywhere. Its slight bias
// does not matter for a demo.
std::uint32_t pick(std::mt19937& rng, std::uint32_t lo, std::uint32_t hi) {
  return lo + static_cast<std::uint32_t>(rng() % (hi - lo + 1));
}

std::int32_t pick(std::mt19937& rng, std::int32_t lo, std::int32_t hi) {
  return lo + static_cast<std::int32_t>(rng() % static_cast<std::uint32_t>(hi - lo + 1));
}

}  // namespace

std::vector<project_profile> default_profiles() {
  // Priorities overlap a little so that the ordering is visible but not a strict partition.
  // The mean run time (~10 ms) keeps two 4-slot workers busy for several seconds with the
  // default 3000 tasks: long enough for the backlog to engage the reserve worker.
  return {
      {"web", 45, 5, 9, 2, 8, 15},
      {"reports", 30, 0, 4, 10, 20, 5},
      {"ml", 25, -1, 3, 8, 20, 5},
  };
}

std::vector<protocol::task_spec> make_workload(const std::vector<project_profile>& profiles,
                                               std::uint32_t count, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<protocol::task_spec> tasks;
  tasks.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    // Projects interleave in the batch, as they would when several producers share a dispatcher.
    std::uint32_t roll = pick(rng, 0u, 99u);
    const project_profile* profile = &profiles.back();
    for (const auto& p : profiles) {
      if (roll < p.share_percent) {
        profile = &p;
        break;
      }
      roll -= p.share_percent;
    }

    protocol::task_spec spec;
    spec.project = profile->name;
    spec.priority = pick(rng, profile->min_priority, profile->max_priority);
    if (pick(rng, 0u, 99u) < profile->echo_percent) {
      spec.type = "echo";
      spec.payload = profile->name + " #" + std::to_string(i) + ": hello";
    } else {
      spec.type = "sleep";
      spec.payload = std::to_string(pick(rng, profile->min_sleep_ms, profile->max_sleep_ms));
    }
    tasks.push_back(std::move(spec));
  }
  return tasks;
}

}  // namespace dispatch::demo
