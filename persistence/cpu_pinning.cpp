#include "persistence/cpu_pinning.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace dispatch::persistence {
namespace {

bool parse_cpu(std::string_view text, int& cpu) {
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, cpu);
  return ec == std::errc() && ptr == end && cpu >= 0 && cpu < CPU_SETSIZE;
}

}  // namespace

bool parse_cpu_list(std::string_view text, std::vector<int>& cpus, std::string& error) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    error = std::string("cannot read this process's CPUs: ") + std::strerror(errno);
    return false;
  }
  std::vector<int> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = std::min(text.find(',', start), text.size());
    const auto item = text.substr(start, comma - start);
    const auto dash = item.find('-');
    int first = 0;
    int last = 0;
    const bool ok = dash == std::string_view::npos
                        ? parse_cpu(item, first) && parse_cpu(item, last)
                        : parse_cpu(item.substr(0, dash), first) &&
                              parse_cpu(item.substr(dash + 1), last) && first <= last;
    if (!ok) {
      error = "\"" + std::string(item) + "\" is not a CPU number or a range like 2-3";
      return false;
    }
    for (int cpu = first; cpu <= last; ++cpu) {
      if (!CPU_ISSET(cpu, &allowed)) {
        error = "CPU " + std::to_string(cpu) + " is not available to this process";
        return false;
      }
      out.push_back(cpu);
    }
    start = comma + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  cpus = std::move(out);
  return true;
}

status pin_this_thread(const std::vector<int>& cpus) {
  if (cpus.empty()) return status::ok();
  cpu_set_t set;
  CPU_ZERO(&set);
  for (const int cpu : cpus) CPU_SET(cpu, &set);
  if (const int e = pthread_setaffinity_np(pthread_self(), sizeof set, &set); e != 0)
    return status::invalid_argument(std::string("cannot pin a store thread: ") + std::strerror(e));
  return status::ok();
}

}  // namespace dispatch::persistence
