#include "actors/event_command_sink.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

extern char** environ;  // POSIX: the environment the command inherits

namespace dispatch::actors {
namespace {

using clock = std::chrono::steady_clock;

// A drop warning at most this often: a queue that stays full would otherwise log once per batch.
constexpr auto drop_warning_interval = std::chrono::seconds(10);

// An owned file descriptor.
class fd_handle {
 public:
  fd_handle() = default;
  explicit fd_handle(int fd) : fd_(fd) {}
  ~fd_handle() { reset(); }
  fd_handle(const fd_handle&) = delete;
  fd_handle& operator=(const fd_handle&) = delete;
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// posix_spawn's attribute and file action objects must be destroyed once initialised.
struct spawn_setup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  bool ok = false;
  spawn_setup() {
    const bool a = posix_spawn_file_actions_init(&actions) == 0;
    const bool b = posix_spawnattr_init(&attr) == 0;
    ok = a && b;
    if (!ok) {  // tear down whichever half did succeed
      if (a) posix_spawn_file_actions_destroy(&actions);
      if (b) posix_spawnattr_destroy(&attr);
    }
  }
  ~spawn_setup() {
    if (ok) {
      posix_spawn_file_actions_destroy(&actions);
      posix_spawnattr_destroy(&attr);
    }
  }
  spawn_setup(const spawn_setup&) = delete;
  spawn_setup& operator=(const spawn_setup&) = delete;
};

std::string errno_text(int err) { return std::strerror(err); }

// Writes `data` to the non-blocking `fd` until done, the command closed its stdin (it need not
// read it; its exit status decides), or the deadline. A broken pipe raises SIGPIPE for this
// thread, which blocks it (see run()), so the pending signal is taken here and never delivered.
void feed(int fd, const std::string& data, clock::time_point deadline) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EPIPE) {
      sigset_t pipe_set;
      sigemptyset(&pipe_set);
      sigaddset(&pipe_set, SIGPIPE);
      const timespec zero{0, 0};
      sigtimedwait(&pipe_set, nullptr, &zero);
      return;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) return;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() <= 0) return;
    pollfd p{fd, POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 100)));
  }
}

}  // namespace

std::string event_json(const protocol::event_record& e) {
  nlohmann::ordered_json j = {{"seq", e.seq},         {"kind", e.kind},     {"at", e.at},
                              {"task", e.task},       {"project", e.project}, {"worker", e.worker},
                              {"detail", e.detail}};
  // Details come from workers and need not be UTF-8: replace bad bytes rather than throw.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

event_command_sink::event_command_sink(command_sink_settings settings)
    : settings_(std::move(settings)), thread_([this] { run(); }) {}

event_command_sink::~event_command_sink() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    stop_deadline_ = clock::now() + settings_.shutdown_grace;
  }
  wake_.notify_all();
  thread_.join();
}

void event_command_sink::push(const std::vector<protocol::event_record>& events) {
  if (events.empty()) return;
  std::uint64_t report = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& e : events) {
      if (queue_.size() >= std::max<std::size_t>(settings_.capacity, 1)) {
        queue_.pop_front();
        ++dropped_;
      }
      queue_.push_back(e);
    }
    const auto now = clock::now();
    if (dropped_ > 0 &&
        (!last_drop_warning_ || now - *last_drop_warning_ >= drop_warning_interval)) {
      report = std::exchange(dropped_, 0);
      last_drop_warning_ = now;
    }
  }
  wake_.notify_one();
  // Logged outside the lock: the sink thread should not wait on the logger.
  if (report > 0)
    spdlog::warn("event command: queue full ({} waiting), dropped the {} oldest events",
                 settings_.capacity, report);
}

bool event_command_sink::stopping() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stop_;
}

void event_command_sink::run() {
  // Writing to the stdin of a command that exited raises SIGPIPE, whose default action would end
  // the daemon. Blocked in this thread only (the process's disposition is not ours to change);
  // feed() takes the pending signal.
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);

  for (;;) {
    protocol::event_record e;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping, and nothing left
      if (stop_ && clock::now() >= stop_deadline_) {
        const auto left = queue_.size();
        queue_.clear();
        lock.unlock();
        spdlog::warn("event command: shutting down, {} queued events not delivered", left);
        break;
      }
      e = std::move(queue_.front());
      queue_.pop_front();
    }

    for (std::uint32_t tries = 1;; ++tries) {
      if (deliver(e, clock::now() + settings_.run_timeout)) break;
      if (stopping()) {
        spdlog::warn("event command: event {} ({}) not retried: shutting down", e.seq, e.kind);
        break;
      }
      if (tries >= settings_.max_tries) {
        spdlog::error("event command: gave up on event {} ({}) after {} tries", e.seq, e.kind,
                      tries);
        break;
      }
      // first_backoff * 2^(tries-1), capped; the shift is bounded so it cannot overflow.
      const auto factor = std::int64_t{1} << std::min<std::uint32_t>(tries - 1, 20);
      const auto backoff = std::min(settings_.first_backoff * factor, settings_.max_backoff);
      spdlog::warn("event command: event {} ({}) failed (try {} of {}), again in {} ms", e.seq,
                   e.kind, tries, settings_.max_tries, backoff.count());
      std::unique_lock<std::mutex> lock(mutex_);
      // A stop cuts the wait short; the event then gets one last try within the grace period.
      wake_.wait_for(lock, backoff, [&] { return stop_; });
    }
  }

  std::lock_guard<std::mutex> lock(mutex_);
  if (dropped_ > 0)
    spdlog::warn("event command: {} events were dropped while the queue was full", dropped_);
}

bool event_command_sink::deliver(const protocol::event_record& e, clock::time_point deadline) {
  const std::string input = event_json(e) + "\n";

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    spdlog::error("event command: cannot create a pipe: {}", errno_text(errno));
    return false;
  }
  fd_handle read_end(fds[0]);
  fd_handle write_end(fds[1]);
  // dup2 onto the same number would leave close-on-exec set, and the command without stdin:
  // possible only when the daemon runs with fd 0 closed, so move the read end out of the way.
  if (read_end.get() == STDIN_FILENO) {
    const int moved = ::fcntl(read_end.get(), F_DUPFD_CLOEXEC, 3);
    if (moved < 0) {
      spdlog::error("event command: cannot move a pipe: {}", errno_text(errno));
      return false;
    }
    read_end.reset(moved);
  }

  spawn_setup setup;
  if (!setup.ok) {
    spdlog::error("event command: cannot prepare to start /bin/sh");
    return false;
  }
  // The command's stdin is the pipe; every other descriptor of ours is close-on-exec (the
  // write end included, so the command sees end of input once we close it).
  posix_spawn_file_actions_adddup2(&setup.actions, read_end.get(), STDIN_FILENO);
  // The daemon blocks its shutdown signals in every thread and this one blocks SIGPIPE: the
  // command starts with none blocked and SIGPIPE at its default. Its own process group lets a
  // timeout kill everything it started, not just the shell.
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&setup.attr, &none);
  posix_spawnattr_setsigdefault(&setup.attr, &defaults);
  posix_spawnattr_setpgroup(&setup.attr, 0);
  posix_spawnattr_setflags(&setup.attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

  std::string sh = "/bin/sh";
  std::string dash_c = "-c";
  std::string command = settings_.command;
  char* argv[] = {sh.data(), dash_c.data(), command.data(), nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, sh.c_str(), &setup.actions, &setup.attr, argv, environ);
  read_end.reset();  // the child has its copy; ours would keep the pipe open after it exits
  if (rc != 0) {
    spdlog::error("event command: cannot start /bin/sh: {}", errno_text(rc));
    return false;
  }

  if (::fcntl(write_end.get(), F_SETFL, O_NONBLOCK) == 0) feed(write_end.get(), input, deadline);
  write_end.reset();

  // Polled rather than waited for: a blocking waitpid could not give up at the deadline or at a
  // shutdown. Steps grow from 1 ms, so a quick command is noticed quickly.
  int wstatus = 0;
  auto step = std::chrono::milliseconds(1);
  for (;;) {
    const pid_t r = ::waitpid(pid, &wstatus, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      spdlog::error("event command: cannot wait for the command: {}", errno_text(errno));
      return false;
    }
    auto now = clock::now();
    bool shutting_down = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      shutting_down = stop_;
      if (stop_) deadline = std::min(deadline, stop_deadline_);
    }
    if (now >= deadline) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &wstatus, 0);
      spdlog::warn("event command: killed the command for event {} ({}): {}", e.seq, e.kind,
                   shutting_down ? "shutting down"
                                 : "it ran longer than " +
                                       std::to_string(settings_.run_timeout.count()) + " ms");
      return false;
    }
    std::this_thread::sleep_for(std::min<clock::duration>(step, deadline - now));
    step = std::min(step * 2, std::chrono::milliseconds(50));
  }

  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return true;
  if (WIFEXITED(wstatus))
    spdlog::warn("event command: exited with {} for event {} ({})", WEXITSTATUS(wstatus), e.seq,
                 e.kind);
  else if (WIFSIGNALED(wstatus))
    spdlog::warn("event command: killed by signal {} for event {} ({})", WTERMSIG(wstatus), e.seq,
                 e.kind);
  return false;
}

}  // namespace dispatch::actors
