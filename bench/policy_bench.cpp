// Cost of one scheduling decision in a steady state, across fleet and backlog sizes.
//
// A decision is what the dispatcher does per task once the system is busy: a task finishes, its
// worker offers the freed slot, and dispatch() fills it from the backlog. Each cell keeps the
// backlog near its nominal size by refilling it between timed rounds, so the numbers show how a
// decision scales with the number of queued tasks and of workers (it should grow like log n).
//
//   policy_bench           full grid, each cell measured --reps times (default 3)
//   policy_bench --quick   a 2 x 2 grid, one repetition, for a smoke run
// The table shows the median of the repetitions; bench/results/policy.json (or --out DIR) has
// the median, min, max and samples of every cell.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "bench/support/report.hpp"
#include "dispatcher/policy/scheduler.hpp"

namespace {

using dispatch::task_id;
using dispatch::policy::assignment;
using dispatch::policy::clock_ms;
using dispatch::policy::queued_task;
using dispatch::policy::scheduler;
using dispatch::policy::worker_spec;
using bench_clock = std::chrono::steady_clock;

constexpr int project_count = 16;
constexpr int type_count = 2;
constexpr int priority_count = 4;
constexpr std::uint32_t worker_capacity = 4;

// Bytes currently allocated, to estimate what a queued task costs; 0 where unknown.
std::size_t heap_in_use() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  return mallinfo2().uordblks;
#else
  return 0;
#endif
}

double ns_between(bench_clock::time_point from, bench_clock::time_point to) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count());
}

// Produces tasks spread over projects, types and priorities, so that the urgency index holds
// many lanes and fair share re-keys several of them per decision.
class task_source {
 public:
  task_source() {
    for (int p = 0; p < project_count; ++p)
      for (int t = 0; t < type_count; ++t)
        for (int prio = 0; prio < priority_count; ++prio)
          templates_.push_back(queued_task{0, "project-" + std::to_string(p),
                                           "type-" + std::to_string(t), prio, {}});
  }

  void enqueue_into(scheduler& s, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      // A multiplicative hash spreads consecutive ids over the templates deterministically.
      queued_task& t = templates_[(next_ * 2654435761u >> 7) % templates_.size()];
      t.id = next_++;
      s.enqueue(t);
    }
  }

 private:
  std::vector<queued_task> templates_;
  task_id next_ = 1;
};

struct cell {
  std::size_t workers = 0;
  std::size_t queued = 0;
  double ns_decision = 0;
  double ns_enqueue = 0;
  double bytes_per_queued = 0;
};

cell measure(std::size_t worker_count, std::size_t backlog, std::size_t decisions_wanted) {
  scheduler s;
  clock_ms now = 0;
  for (std::size_t w = 0; w < worker_count; ++w) {
    worker_spec spec;
    spec.id = "worker-" + std::to_string(w);
    for (int t = 0; t < type_count; ++t) spec.types.push_back("type-" + std::to_string(t));
    spec.capacity = worker_capacity;
    s.add_worker(spec, now);
  }

  // Enough tasks to fill every worker and still leave `backlog` waiting.
  task_source source;
  const std::size_t initial = backlog + worker_count * worker_capacity;
  const std::size_t heap_before = heap_in_use();
  const auto fill_start = bench_clock::now();
  source.enqueue_into(s, initial);
  double enqueue_ns = ns_between(fill_start, bench_clock::now());
  std::size_t enqueued = initial;
  const std::size_t heap_after = heap_in_use();

  std::deque<assignment> running;
  std::vector<assignment> out;
  for (std::size_t w = 0; w < worker_count; ++w)
    s.offer("worker-" + std::to_string(w), worker_capacity);
  s.dispatch(now, out);
  running.assign(out.begin(), out.end());

  // Timed rounds of decisions; the backlog dips by at most a tenth before it is refilled. The
  // median round is reported, so that a neighbour stealing the CPU for a moment does not count.
  const std::size_t round = std::clamp<std::size_t>(backlog / 10, 1, 5000);
  std::vector<double> round_ns;
  std::size_t decisions = 0;
  std::uint64_t checksum = 0;
  while (decisions < decisions_wanted) {
    const auto start = bench_clock::now();
    for (std::size_t i = 0; i < round; ++i) {
      const assignment done = running.front();
      running.pop_front();
      s.finish(done.task, ++now);
      s.offer(done.worker, 1);
      out.clear();
      s.dispatch(now, out);
      running.push_back(out.front());
      checksum += out.front().task;
    }
    round_ns.push_back(ns_between(start, bench_clock::now()) / static_cast<double>(round));
    decisions += round;

    const auto refill_start = bench_clock::now();
    source.enqueue_into(s, round);
    enqueue_ns += ns_between(refill_start, bench_clock::now());
    enqueued += round;
  }
  if (checksum == 0) std::puts("");  // keeps the loop's work observable

  cell c;
  c.workers = worker_count;
  c.queued = backlog;
  std::nth_element(round_ns.begin(), round_ns.begin() + round_ns.size() / 2, round_ns.end());
  c.ns_decision = round_ns[round_ns.size() / 2];
  c.ns_enqueue = enqueue_ns / static_cast<double>(enqueued);
  c.bytes_per_queued = heap_after > heap_before ? static_cast<double>(heap_after - heap_before) /
                                                      static_cast<double>(initial)
                                                : 0;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  using dispatch::bench::summarize;
  bool quick = false;
  int repetitions = 0;  // 0: 3, or 1 with --quick
  std::string out_dir = std::string(DISPATCH_SOURCE_DIR) + "/bench/results";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      repetitions = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
      out_dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--reps N] [--out DIR]\n", argv[0]);
      return 2;
    }
  }
  if (repetitions <= 0) repetitions = quick ? 1 : 3;
  const std::vector<std::size_t> worker_grid =
      quick ? std::vector<std::size_t>{10, 1000} : std::vector<std::size_t>{10, 100, 1000, 10000};
  const std::vector<std::size_t> backlog_grid =
      quick ? std::vector<std::size_t>{1000, 100000}
            : std::vector<std::size_t>{1000, 10000, 100000, 1000000};
  const std::size_t decisions = quick ? 50000 : 500000;

  dispatch::bench::report rep("policy", repetitions);
  rep.params() = {{"projects", project_count},   {"types", type_count},
                  {"priorities", priority_count}, {"worker_capacity", worker_capacity},
                  {"decisions_per_cell", decisions}};
  rep.note("decision = finish + re-offer + dispatch of one task (median of timed rounds within "
           "a repetition, then median [min..max] over repetitions)");

  std::printf("%d projects x %d types x %d priorities, workers of capacity %u\n", project_count,
              type_count, priority_count, worker_capacity);
  std::printf("decision = finish + re-offer + dispatch of one task (median of timed rounds)\n");
  std::printf("median of %d repetitions\n\n", repetitions);
  std::printf("%8s %9s %13s %12s %11s\n", "workers", "queued", "ns/decision", "ns/enqueue",
              "B/queued");
  const auto total_start = bench_clock::now();
  for (std::size_t workers : worker_grid) {
    for (std::size_t backlog : backlog_grid) {
      std::vector<double> decision, enqueue, bytes;
      for (int r = 0; r < repetitions; ++r) {
        const cell c = measure(workers, backlog, decisions);
        decision.push_back(c.ns_decision);
        enqueue.push_back(c.ns_enqueue);
        bytes.push_back(c.bytes_per_queued);
      }
      auto& row = rep.add("workers " + std::to_string(workers) + " queued " +
                              std::to_string(backlog),
                          {{"workers", workers}, {"queued", backlog}});
      row.figures["ns_per_decision"] = summarize(decision);
      row.figures["ns_per_enqueue"] = summarize(enqueue);
      row.figures["bytes_per_queued"] = summarize(bytes);
      std::printf("%8zu %9zu %13.0f %12.0f %11.0f\n", workers, backlog,
                  row.figures["ns_per_decision"].median, row.figures["ns_per_enqueue"].median,
                  row.figures["bytes_per_queued"].median);
      std::fflush(stdout);
    }
  }
  std::printf("\ntotal %.1f s\n", ns_between(total_start, bench_clock::now()) / 1e9);
  save(rep, out_dir);
  return 0;
}
