#include "worker-agent/signal_watcher.hpp"

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <system_error>

namespace dispatch::worker {
namespace {

sigset_t watched_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

signal_watcher::signal_watcher(std::function<void(int)> on_signal)
    : on_signal_(std::move(on_signal)) {
  const sigset_t set = watched_signals();
  if (const int rc = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0)
    throw std::system_error(rc, std::generic_category(), "pthread_sigmask");
  thread_ = std::thread([this] { watch(); });
}

signal_watcher::~signal_watcher() {
  closing_.store(true, std::memory_order_release);
  // Wake sigwait with a signal aimed at this thread only; with closing_ set it is not reported.
  ::pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

void signal_watcher::watch() {
  const sigset_t set = watched_signals();
  for (;;) {
    int sig = 0;
    if (::sigwait(&set, &sig) != 0) continue;
    if (closing_.load(std::memory_order_acquire)) return;
    on_signal_(sig);
  }
}

}  // namespace dispatch::worker
