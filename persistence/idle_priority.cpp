#include "persistence/idle_priority.hpp"

#include <sched.h>

#include <exception>
#include <thread>

namespace dispatch::persistence {

void enter_idle_priority() {
  const sched_param none{};
  sched_setscheduler(0, SCHED_IDLE, &none);  // 0: the calling thread (Linux)
}

void run_at_idle_priority(const std::function<void()>& work) {
  std::exception_ptr failed;
  std::thread([&] {
    enter_idle_priority();
    try {
      work();
    } catch (...) {
      failed = std::current_exception();
    }
  }).join();
  if (failed) std::rethrow_exception(failed);
}

}  // namespace dispatch::persistence
