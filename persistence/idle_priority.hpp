// Running the store's background work at the kernel's idle priority (SCHED_IDLE).
//
// A flush, a compaction or a retention search is CPU work of many milliseconds that nobody waits
// for, while the store's writer is on every request's path. A lower nice level is not enough to
// keep them apart: the kernel's EEVDF scheduler lets the running thread finish its slice (about
// 3 ms) before a woken one of higher weight gets the CPU, and a writer woken behind a flush then
// waits that long. A thread of a normal policy always preempts a SCHED_IDLE one at once.
#pragma once

#include <sched.h>

namespace dispatch::persistence {

// Moves the calling thread to SCHED_IDLE for good. A failure (a kernel without it, a seccomp
// filter) only costs the preemption; the thread runs on at its old priority.
void enter_idle_priority();

// The calling thread at SCHED_IDLE for the scope's lifetime, then back to the policy it had.
// A thread created inside the scope inherits SCHED_IDLE.
class idle_priority_scope {
 public:
  idle_priority_scope();
  ~idle_priority_scope();
  idle_priority_scope(const idle_priority_scope&) = delete;
  idle_priority_scope& operator=(const idle_priority_scope&) = delete;

 private:
  int policy_;
  sched_param param_{};
};

}  // namespace dispatch::persistence
