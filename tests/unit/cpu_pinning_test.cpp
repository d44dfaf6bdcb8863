#include <catch2/catch.hpp>

#include <pthread.h>
#include <sched.h>

#include <thread>

#include "persistence/cpu_pinning.hpp"
#include "tests/support/thread_cpus.hpp"

using dispatch::persistence::parse_cpu_list;
using dispatch::persistence::pin_this_thread;
using dispatch::testing::allowed_cpus;

namespace {

// Empty if the kernel cannot say (it is called off Catch's thread, where REQUIRE must not run).
std::vector<int> this_thread_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  return cpus;
}

}  // namespace

TEST_CASE("a CPU list of single CPUs and ranges comes back sorted without repeats") {
  const auto allowed = allowed_cpus();
  REQUIRE_FALSE(allowed.empty());
  const auto first = std::to_string(allowed.front());
  const auto last = std::to_string(allowed.back());
  std::vector<int> cpus;
  std::string error;
  REQUIRE(parse_cpu_list(first, cpus, error));
  CHECK(cpus == std::vector<int>{allowed.front()});
  // Every CPU from the first allowed to the last as a range, with repeats, out of order: taken
  // as the allowed set when it has no gaps, refused (a CPU in a gap) when it has.
  const auto text = last + "," + first + "-" + last + "," + first;
  const bool contiguous = allowed.back() - allowed.front() + 1 == static_cast<int>(allowed.size());
  CHECK(parse_cpu_list(text, cpus, error) == contiguous);
  if (contiguous) CHECK(cpus == allowed);
}

TEST_CASE("malformed CPU lists and CPUs this process cannot use are refused by name") {
  std::vector<int> cpus{7};
  std::string error;
  for (const char* bad : {"", ",", "1,", "a", "1-", "-1", "3-1", "1-2-3", "1 ", "+1", "0x1"}) {
    INFO("text: '" << bad << "'");
    CHECK_FALSE(parse_cpu_list(bad, cpus, error));
    CHECK_THAT(error, Catch::Contains("is not a CPU number"));
  }
  CHECK(cpus == std::vector<int>{7});  // untouched on failure
  CHECK_FALSE(parse_cpu_list(std::to_string(CPU_SETSIZE), cpus, error));
  // One past the last allowed CPU exists nowhere this process may run.
  const auto beyond = std::to_string(allowed_cpus().back() + 1);
  CHECK_FALSE(parse_cpu_list(beyond, cpus, error));
  CHECK_THAT(error, Catch::Contains("CPU " + beyond + " is not available"));
}

TEST_CASE("pinning a thread restricts that thread only and an empty list leaves it alone") {
  const auto allowed = allowed_cpus();
  bool left_alone = false;
  bool pinned = false;
  std::vector<int> unpinned_cpus;
  std::vector<int> pinned_cpus;
  std::thread t([&] {
    left_alone = pin_this_thread({}).is_ok();
    unpinned_cpus = this_thread_cpus();
    pinned = pin_this_thread({allowed.back()}).is_ok();
    pinned_cpus = this_thread_cpus();
  });
  t.join();
  CHECK(left_alone);
  CHECK(unpinned_cpus == allowed);
  CHECK(pinned);
  CHECK(pinned_cpus == std::vector<int>{allowed.back()});
  CHECK(this_thread_cpus() == allowed);
}
