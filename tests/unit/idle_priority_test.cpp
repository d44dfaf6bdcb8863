#include <catch2/catch.hpp>

#include <pthread.h>
#include <sched.h>

#include <stdexcept>
#include <thread>
#include <vector>

#include "persistence/idle_priority.hpp"

using dispatch::persistence::enter_idle_priority;
using dispatch::persistence::run_at_idle_priority;

namespace {

// The calling thread's CPUs, as a mask (CPU_EQUAL compares them).
cpu_set_t this_thread_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  pthread_getaffinity_np(pthread_self(), sizeof set, &set);
  return set;
}

}  // namespace

TEST_CASE("enter_idle_priority moves the calling thread to SCHED_IDLE") {
  std::vector<int> seen;
  std::thread([&] {
    seen.push_back(sched_getscheduler(0));
    enter_idle_priority();
    seen.push_back(sched_getscheduler(0));
  }).join();
  CHECK(seen == std::vector<int>{SCHED_OTHER, SCHED_IDLE});
}

TEST_CASE("work run at idle priority leaves the caller's thread as it was") {
  // The caller is a thread of its own whose CPUs are narrowed to one, as --storage-cpus does.
  bool same_cpus = false;
  int work_policy = -1, caller_before = -1, caller_after = -1;
  std::thread([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    caller_before = sched_getscheduler(0);
    run_at_idle_priority([&] {
      work_policy = sched_getscheduler(0);
      const cpu_set_t mine = this_thread_cpus();
      same_cpus = CPU_EQUAL(&mine, &one);
    });
    caller_after = sched_getscheduler(0);
  }).join();
  CHECK(work_policy == SCHED_IDLE);
  CHECK(same_cpus);
  CHECK(caller_before == SCHED_OTHER);
  CHECK(caller_after == SCHED_OTHER);
}

TEST_CASE("an exception thrown by work run at idle priority reaches the caller") {
  CHECK_THROWS_WITH(run_at_idle_priority([] { throw std::runtime_error("search failed"); }),
                    "search failed");
}
