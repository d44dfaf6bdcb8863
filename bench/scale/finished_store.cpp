#include "bench/scale/finished_store.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <stdexcept>

#include "bench/support/workload.hpp"
#include "persistence/task_store.hpp"
#include "protocol/wall_clock.hpp"

namespace dispatch::bench {

double build_finished_store(const std::string& dir, std::size_t finished, std::size_t pending,
                            std::size_t payload) {
  const auto start = bench_clock::now();
  std::unique_ptr<persistence::task_store> store;
  if (auto s = persistence::task_store::open({dir, persistence::durability::wal, {}}, store);
      !s.is_ok())
    throw std::runtime_error("cannot open the store: " + s.message());

  // Finished over the last ~30 days, one every few ms, by a few workers: the index then has
  // realistic spreads of time buckets and names.
  const millis now = wall_now();
  const millis first_created = now - 30LL * 24 * 3600 * 1000;
  const millis step =
      std::max<millis>(1, 30LL * 24 * 3600 * 1000 / static_cast<millis>(finished + 1));
  priority_source priorities;
  const std::string body = stamped_payload(payload, 0);
  constexpr std::size_t chunk = 10'000;  // tasks per write: bounded memory, few writes
  const std::size_t total = finished + pending;
  for (std::size_t first = 0; first < total; first += chunk) {
    persistence::write_batch batch;
    const std::size_t n = std::min(chunk, total - first);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t index = first + i;
      task t;
      t.id = index + 1;
      t.project = bench_project;
      t.type = bench_type;
      t.priority = priorities.next();
      t.payload = body;
      t.created_at = first_created + static_cast<millis>(index) * step;
      if (index < finished) {
        t.status = task_status::completed;
        t.attempts = 1;
        t.worker = "bench-worker-" + std::to_string(index % 16);
        t.assigned_at = t.created_at + 1;
        t.finished_at = t.created_at + 2;
      }
      batch.put_task(t, std::nullopt);
    }
    batch.set_last_id(first + n);
    if (auto s = store->apply(batch); !s.is_ok())
      throw std::runtime_error("cannot write finished tasks: " + s.message());
  }
  store.reset();  // closed before the daemon opens it
  return std::chrono::duration<double>(bench_clock::now() - start).count();
}

}  // namespace dispatch::bench
