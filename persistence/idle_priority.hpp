// Running the store's background work at the kernel's idle priority (SCHED_IDLE).
//
// A flush, a compaction or a retention search is CPU work of many milliseconds that nobody waits
// for, while the store's writer is on every request's path. A lower nice level is not enough to
// keep them apart: the kernel's EEVDF scheduler lets the running thread finish its slice (about
// 3 ms) before a woken one of higher weight gets the CPU, and a writer woken behind a flush then
// waits that long. A thread of a normal policy always preempts a SCHED_IDLE one at once.
#pragma once

#include <functional>

namespace dispatch::persistence {

// Moves the calling thread to SCHED_IDLE for good: leaving it again needs CAP_SYS_NICE (or an
// RLIMIT_NICE that allows nice 0). A failure (a kernel without it, a seccomp filter) only costs
// the preemption; the thread runs on at its old priority.
void enter_idle_priority();

// Runs `work` on a thread of its own at SCHED_IDLE and waits for it; an exception it throws is
// rethrown here. For work on a thread that must keep its normal priority afterwards (the new
// thread inherits the caller's CPUs, so --storage-cpus still holds).
void run_at_idle_priority(const std::function<void()>& work);

}  // namespace dispatch::persistence
