// The CPUs each thread of a process may run on, and its nice value, as /proc shows them: what
// --storage-cpus tests look at from outside the threads they pinned.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace dispatch::testing {

struct thread_view {
  std::string cpus;  // Cpus_allowed_list: "0-1", "1"
  int nice = 0;
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
    // stat: "pid (comm) state ..." with nice the 17th field after the closing parenthesis.
    std::string stat;
    std::getline(std::ifstream(t.path() / "stat"), stat);
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    for (int i = 0; i < 17 && fields >> field; ++i) {
    }
    v.nice = std::stoi(field);
    out.emplace(name, v);
  }
  return out;
}

}  // namespace dispatch::testing
