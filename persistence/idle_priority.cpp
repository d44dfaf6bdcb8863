#include "persistence/idle_priority.hpp"

namespace dispatch::persistence {

void enter_idle_priority() {
  const sched_param none{};
  sched_setscheduler(0, SCHED_IDLE, &none);  // 0: the calling thread (Linux)
}

idle_priority_scope::idle_priority_scope() : policy_(sched_getscheduler(0)) {
  sched_getparam(0, &param_);
  enter_idle_priority();
}

idle_priority_scope::~idle_priority_scope() {
  // Leaving SCHED_IDLE for a normal policy needs no privilege (RLIMIT_NICE only bounds nice
  // levels), so the thread gets its old policy back.
  if (policy_ >= 0) sched_setscheduler(0, policy_, &param_);
}

}  // namespace dispatch::persistence
