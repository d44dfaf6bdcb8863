#include "actors/io_driven_queue.hpp"

#include <poll.h>

namespace dispatch::actors {

void io_driven_queue::push(caf::resumable* job) {
  std::unique_lock<std::mutex> lock(mutex_);
  jobs_.push_back(job);
  wake(lock);
}

void io_driven_queue::wake(std::unique_lock<std::mutex>& lock) {
  // The serving thread first: it keeps the work on the thread that already has the sockets.
  // Notifying after the unlock spares the woken thread a wait for the mutex (CAF's own policies
  // notify while holding it).
  if (poller_asleep_) {
    if (wake_pending_) return;  // a write is on its way and unread: the poller will wake
    wake_pending_ = true;
    lock.unlock();
    wake_.signal();
  } else if (others_asleep_ > 0) {
    lock.unlock();
    others_cv_.notify_one();
  }
}

caf::resumable* io_driven_queue::pop(bool serves_io) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!serves_io) {
    ++others_asleep_;
    others_cv_.wait(lock, [this] { return !jobs_.empty(); });
    --others_asleep_;
    auto* job = jobs_.front();
    jobs_.pop_front();
    return job;
  }
  serving_thread_ = std::this_thread::get_id();
  for (;;) {
    if (detaching_) {
      if (auto* io = io_) {
        lock.unlock();
        io->close();
        lock.lock();
        io_ = nullptr;
      }
      detaching_ = false;
      detached_cv_.notify_all();
    }
    auto* io = io_;
    const bool have_job = !jobs_.empty();
    // Replies go out before the next job. While jobs keep coming, the sockets still get a look
    // every io_interval: a steady stream of actor messages must not starve requests.
    if (have_job && (io == nullptr || (!io->output_waiting() &&
                                       clock::now() - last_io_turn_ < io_interval))) {
      auto* job = jobs_.front();
      jobs_.pop_front();
      return job;
    }
    poller_asleep_ = !have_job;
    lock.unlock();
    const bool woken = wait_for_wake(io, !have_job);
    if (woken) wake_.reset();
    lock.lock();
    poller_asleep_ = false;
    // Readable means the one write of the pending wake has landed (no other is made while it is
    // pending), so the read consumed it.
    if (woken) wake_pending_ = false;
    if (io != nullptr) {
      lock.unlock();
      io->handle();
      last_io_turn_ = clock::now();
      lock.lock();
    }
  }
}

bool io_driven_queue::wait_for_wake(io_loop* io, bool block) {
  if (io != nullptr) return io->wait(block, wake_.fd());
  pollfd wake{wake_.fd(), POLLIN, 0};
  if (::poll(&wake, 1, block ? -1 : 0) < 0) return false;
  return wake.revents & POLLIN;
}

bool io_driven_queue::send_output_now() {
  io_loop* io = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Only the serving thread clears io_, and it is the caller: io stays valid past the lock.
    if (std::this_thread::get_id() == serving_thread_) io = io_;
  }
  return io != nullptr && io->send_output_now();
}

void io_driven_queue::attach(io_loop& io) {
  std::unique_lock<std::mutex> lock(mutex_);
  io_ = &io;
  wake(lock);  // a poller asleep on the eventfd alone starts polling the sockets too
}

void io_driven_queue::detach() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (io_ == nullptr) return;
  detaching_ = true;
  wake(lock);
  if (!lock.owns_lock()) lock.lock();
  detached_cv_.wait(lock, [this] { return io_ == nullptr; });
}

}  // namespace dispatch::actors
