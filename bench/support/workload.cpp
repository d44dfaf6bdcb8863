#include "bench/support/workload.hpp"

#include <cstring>

namespace dispatch::bench {

std::string stamped_payload(std::size_t size, std::int64_t stamp_ns) {
  std::string p(size < 8 ? 8 : size, 'x');
  std::memcpy(p.data(), &stamp_ns, 8);
  return p;
}

std::int64_t payload_stamp(std::string_view payload) {
  if (payload.size() < 8) return 0;
  std::int64_t stamp = 0;
  std::memcpy(&stamp, payload.data(), 8);
  return stamp;
}

std::vector<protocol::task_spec> make_specs(std::size_t count, std::size_t payload,
                                            priority_source& priorities) {
  std::vector<protocol::task_spec> specs(count);
  const std::string body = stamped_payload(payload, now_ns());
  for (auto& s : specs) {
    s.project = bench_project;
    s.type = bench_type;
    s.priority = priorities.next();
    s.payload = body;
  }
  return specs;
}

}  // namespace dispatch::bench
