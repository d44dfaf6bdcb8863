// The store's detached actors call this first thing in their behavior, which CAF runs on the
// actor's own thread, so that --storage-cpus keeps that thread on the store's CPUs
// (persistence/cpu_pinning.hpp): the persistence actor and the store reader pin to the task
// store's cpus(), the notifier to notifier_settings::storage_cpus.
#pragma once

#include <spdlog/spdlog.h>

#include <vector>

#include "persistence/cpu_pinning.hpp"

namespace dispatch::actors {

inline void pin_actor_thread(const char* actor, const std::vector<int>& cpus) {
  // The CPUs were checked when the option was parsed; if the kernel refuses now, the daemon
  // still works, only without the pinning.
  if (const auto s = persistence::pin_this_thread(cpus); !s.is_ok())
    spdlog::warn("{} actor: {}", actor, s.to_string());
}

}  // namespace dispatch::actors
