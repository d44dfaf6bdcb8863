// The job queue of the actor scheduler (actors/io_driven_scheduler.hpp), and the reason it
// exists: the scheduler's first thread serves the daemon's sockets (an io_loop) whenever it has
// no job, instead of sleeping on a condition variable while a separate I/O thread polls. A
// request then reaches the dispatcher actor, and its replies the sockets, on the thread that
// read it: two thread hand-offs fewer per request, on the path every task's latency runs through.
//
// Jobs from other threads (the store's replies, timers) wake that thread through an eventfd it
// polls next to the sockets; jobs it queues itself wake nobody. While jobs keep coming, the
// sockets are still looked at every `io_interval`. Other scheduler threads (--threads > 1) wait
// on a condition variable and are woken only when the first thread is busy.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "dispatcher/io_loop.hpp"
#include "dispatcher/wake_signal.hpp"

namespace caf {
class resumable;
}

namespace dispatch::actors {

class io_driven_queue {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr std::chrono::microseconds io_interval{200};

  io_driven_queue() = default;
  io_driven_queue(const io_driven_queue&) = delete;
  io_driven_queue& operator=(const io_driven_queue&) = delete;

  // Any thread.
  void push(caf::resumable* job);
  // A scheduler thread: the next job, waiting for one as long as it takes. `serves_io` is true for
  // exactly one thread, the one that serves the io_loop while it waits.
  caf::resumable* pop(bool serves_io);
  // Shutdown, after the scheduler's threads have stopped: hands every queued job to `f`.
  template <class F>
  void drain(F f) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!jobs_.empty()) {
      auto* job = jobs_.front();
      jobs_.pop_front();
      f(job);
    }
  }

  // From a job: if it runs on the serving thread, has the io_loop send the queued replies now
  // (io_loop::send_output_now) and returns true when no request is waiting to be read, so the job
  // may spend a moment on work nobody waits for without holding anyone up. False (nothing sent)
  // on another thread or with nothing attached.
  bool send_output_now();

  // The serving thread uses `io` from its next wait on. `io` must stay valid until detach().
  void attach(io_loop& io);
  // Has the serving thread close the io_loop (its sockets belong to that thread) and stop serving
  // it; returns once that is done, so the serving thread must still be popping. A no-op when
  // nothing is attached.
  void detach();

 private:
  // Waits on the eventfd alone (nothing attached) or serves the io_loop; called unlocked.
  bool wait_for_wake(io_loop* io, bool block);
  void wake(std::unique_lock<std::mutex>& lock);

  std::mutex mutex_;
  std::deque<caf::resumable*> jobs_;  // guarded by mutex_
  wake_signal wake_;
  bool poller_asleep_ = false;  // the serving thread waits in poll; guarded by mutex_
  bool wake_pending_ = false;   // the eventfd was written and not yet read; guarded by mutex_
  std::condition_variable others_cv_;
  int others_asleep_ = 0;   // other scheduler threads waiting on others_cv_; guarded by mutex_
  io_loop* io_ = nullptr;   // guarded by mutex_
  std::thread::id serving_thread_;  // set by its pops; guarded by mutex_
  bool detaching_ = false;  // guarded by mutex_
  std::condition_variable detached_cv_;
  clock::time_point last_io_turn_;  // the serving thread's own
};

}  // namespace dispatch::actors
