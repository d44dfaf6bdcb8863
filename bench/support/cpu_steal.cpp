#include "bench/support/cpu_steal.hpp"

#include <fstream>
#include <string>

namespace dispatch::bench {

std::optional<cpu_times> read_cpu_times() {
  std::ifstream in("/proc/stat");
  std::string label;
  if (!(in >> label) || label != "cpu") return std::nullopt;
  // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
  std::uint64_t fields[8] = {};
  for (auto& f : fields)
    if (!(in >> f)) return std::nullopt;
  cpu_times t;
  for (const auto f : fields) t.total += f;
  t.steal = fields[7];
  return t;
}

std::optional<double> steal_percent(const std::optional<cpu_times>& from,
                                    const std::optional<cpu_times>& to) {
  if (!from || !to || to->total <= from->total || to->steal < from->steal) return std::nullopt;
  return 100.0 * static_cast<double>(to->steal - from->steal) /
         static_cast<double>(to->total - from->total);
}

}  // namespace dispatch::bench
