// The CPUs each thread of a process may run on, as /proc shows them: what --storage-cpus tests
// look at from outside the threads they pinned.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

namespace dispatch::testing {

// Thread name -> its Cpus_allowed_list ("0-1", "1"), one entry per thread of `pid`.
inline std::multimap<std::string, std::string> thread_cpus(pid_t pid) {
  std::multimap<std::string, std::string> out;
  const auto tasks = std::filesystem::path("/proc") / std::to_string(pid) / "task";
  for (const auto& t : std::filesystem::directory_iterator(tasks)) {
    std::string name;
    std::getline(std::ifstream(t.path() / "comm"), name);
    std::ifstream status(t.path() / "status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("Cpus_allowed_list:", 0) == 0)
        out.emplace(name, line.substr(line.find_first_not_of(" \t", 18)));
  }
  return out;
}

}  // namespace dispatch::testing
