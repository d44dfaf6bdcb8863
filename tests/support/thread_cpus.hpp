// The CPUs a process and each of its threads may run on, and each thread's scheduling policy, as
// the kernel reports them: what --storage-cpus tests look at from outside the threads they
// pinned.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace dispatch::testing {

// The CPUs this process may run on, ascending.
inline std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0)
    throw std::runtime_error("sched_getaffinity failed");
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  return cpus;
}

struct thread_view {
  std::string cpus;  // Cpus_allowed_list: "0-1", "1"
  int policy = SCHED_OTHER;  // SCHED_OTHER, SCHED_IDLE, ...
};

// Thread name -> what it may run on, one entry per thread of `pid`.
inline std::multimap<std::string, thread_view> thread_cpus(pid_t pid) {
  std::multimap<std::string, thread_view> out;
  const auto tasks = std::filesystem::path("/proc") / std::to_string(pid) / "task";
  for (const auto& t : std::filesystem::directory_iterator(tasks)) {
    std::string name;
    std::getline(std::ifstream(t.path() / "comm"), name);
    thread_view v;
    std::ifstream status(t.path() / "status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("Cpus_allowed_list:", 0) == 0)
        v.cpus = line.substr(line.find_first_not_of(" \t", 18));
    // Linux keeps a policy per thread, addressed by its id.
    v.policy = sched_getscheduler(static_cast<pid_t>(std::stoi(t.path().filename())));
    out.emplace(name, v);
  }
  return out;
}

}  // namespace dispatch::testing
