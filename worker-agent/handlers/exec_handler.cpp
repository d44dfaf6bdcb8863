// The exec built-in: runs a shell command line in its own process group, collects its output
// through a pipe and kills the whole group on timeout or stop.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <string>

#include "worker-agent/builtin_handlers.hpp"
#include "protocol/duration.hpp"
#include "worker-agent/unique_fd.hpp"

extern char** environ;  // NOLINT: POSIX declares it nowhere; passed to the child unchanged

namespace dispatch::worker::handlers {
namespace {

// A stop request has no file descriptor to poll, so it is checked at least this often.
constexpr std::chrono::milliseconds stop_check_interval{50};
// Without a pidfd, the exit of the child is noticed by checking this often.
constexpr std::chrono::milliseconds exit_check_interval{5};
// 64 KiB chunks read before checking the clock and for a stop request again.
constexpr int reads_per_wakeup = 16;
// Bytes of the end of the output quoted in a failure message.
constexpr std::size_t tail_size = 512;

// Keeps the first `max` bytes of the output for the result, and its last bytes for errors,
// which usually explain themselves at the end.
class output_collector {
 public:
  explicit output_collector(std::size_t max) : max_(max) {}

  void append(const char* data, std::size_t n) {
    const std::size_t keep = std::min(n, max_ - head_.size());
    head_.append(data, keep);
    dropped_ += n - keep;
    tail_.append(data, n);
    if (tail_.size() > 2 * tail_size) tail_.erase(0, tail_.size() - tail_size);
  }

  std::string result() const {
    if (dropped_ == 0) return head_;
    return head_ + "\n[output truncated: " + std::to_string(dropped_) + " bytes dropped]";
  }

  std::string tail() const {
    std::string t = tail_.size() > tail_size ? tail_.substr(tail_.size() - tail_size) : tail_;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
    return t;
  }

 private:
  std::size_t max_;
  std::string head_;
  std::string tail_;
  std::size_t dropped_ = 0;
};

std::string with_tail(std::string message, const output_collector& out) {
  const auto tail = out.tail();
  if (!tail.empty()) message += ": " + tail;
  return message;
}

// posix_spawn attributes and file actions, destroyed on every path.
class spawn_setup {
 public:
  spawn_setup() {
    ::posix_spawnattr_init(&attr_);
    ::posix_spawn_file_actions_init(&actions_);
  }
  ~spawn_setup() {
    ::posix_spawn_file_actions_destroy(&actions_);
    ::posix_spawnattr_destroy(&attr_);
  }
  spawn_setup(const spawn_setup&) = delete;
  spawn_setup& operator=(const spawn_setup&) = delete;

  posix_spawnattr_t attr_;
  posix_spawn_file_actions_t actions_;
};

// Starts `/bin/sh -c command` as the leader of a new process group, stdin from /dev/null,
// stdout and stderr into `out`. Returns 0 and sets `pid`, or returns the error number.
int spawn_shell(const std::string& command, int out, pid_t& pid) {
  spawn_setup s;
  // Its own group, so that timeouts kill the command's children too.
  ::posix_spawnattr_setpgroup(&s.attr_, 0);
  // The agent binary blocks SIGINT/SIGTERM for its signal thread; the command must not inherit
  // that mask, nor any signal the agent ignores.
  sigset_t empty;
  sigemptyset(&empty);
  ::posix_spawnattr_setsigmask(&s.attr_, &empty);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGCHLD}) sigaddset(&defaults, sig);
  ::posix_spawnattr_setsigdefault(&s.attr_, &defaults);
  ::posix_spawnattr_setflags(&s.attr_,
                             POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  ::posix_spawn_file_actions_addopen(&s.actions_, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_adddup2(&s.actions_, out, STDOUT_FILENO);
  ::posix_spawn_file_actions_adddup2(&s.actions_, out, STDERR_FILENO);

  std::string arg0 = "sh", arg1 = "-c", arg2 = command;
  std::array<char*, 4> argv = {arg0.data(), arg1.data(), arg2.data(), nullptr};
  return ::posix_spawn(&pid, "/bin/sh", &s.actions_, &s.attr_, argv.data(), environ);
}

// A descriptor that becomes readable when `pid` exits (Linux >= 5.3), or -1. Called through
// syscall(): glibc 2.36's <sys/pidfd.h> lacks C linkage for C++ callers.
int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

// Reads what is available now, at most `max_reads` chunks so that a command writing faster than
// we read cannot keep us from checking the timeout; false once every writer closed (EOF).
bool read_available(int fd, output_collector& out, int max_reads) {
  std::array<char, 65536> buf{};
  for (int i = 0; i < max_reads; ++i) {
    const auto n = ::read(fd, buf.data(), buf.size());
    if (n > 0) {
      out.append(buf.data(), static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
  return true;
}

// True once the child has exited; it is left a zombie (WNOWAIT) so that its pid, which is also
// the process group id, cannot be reused before the group is killed.
bool has_exited(pid_t pid) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
    return errno == ECHILD;
  return info.si_pid == pid;
}

int reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

class exec_handler {
 public:
  explicit exec_handler(exec_options options) : options_(options) {}

  job_outcome operator()(const job& j, job_control& control) const {
    if (control.stop_requested()) return {false, "stopped", true};

    std::array<int, 2> fds{};
    if (::pipe2(fds.data(), O_CLOEXEC) != 0)
      return {false, std::string("cannot create a pipe: ") + std::strerror(errno), true};
    unique_fd read_end(fds[0]);
    unique_fd write_end(fds[1]);
    // Only our end is non-blocking: the child's writes must block on a full pipe.
    ::fcntl(read_end.get(), F_SETFL, ::fcntl(read_end.get(), F_GETFL) | O_NONBLOCK);

    pid_t pid = 0;
    if (const int err = spawn_shell(j.payload, write_end.get(), pid); err != 0)
      return {false, std::string("cannot start /bin/sh: ") + std::strerror(err), true};
    write_end.reset();  // else EOF would never come

    // Lets an exit wake the poll at once; without it, exits are noticed by checking often.
    unique_fd exit_fd(open_pidfd(pid));

    output_collector out(options_.max_output);
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    bool pipe_open = true;
    enum class ending { exited, timed_out, stopped } how = ending::exited;
    for (;;) {
      if (has_exited(pid)) break;
      const auto now = std::chrono::steady_clock::now();
      if (control.stop_requested()) {
        how = ending::stopped;
        break;
      }
      if (now >= deadline) {
        how = ending::timed_out;
        break;
      }
      auto wait = std::min(std::chrono::ceil<std::chrono::milliseconds>(deadline - now),
                           stop_check_interval);
      if (!exit_fd.valid() && !pipe_open) wait = std::min(wait, exit_check_interval);

      std::array<pollfd, 2> fds{};
      nfds_t count = 0;
      if (pipe_open) fds[count++] = {read_end.get(), POLLIN, 0};
      if (exit_fd.valid()) fds[count++] = {exit_fd.get(), POLLIN, 0};
      if (::poll(fds.data(), count, static_cast<int>(wait.count())) < 0 && errno != EINTR)
        break;  // cannot happen with valid fds; has_exited() or the deadline ends it anyway
      if (pipe_open && fds[0].revents != 0)
        pipe_open = read_available(read_end.get(), out, reads_per_wakeup);
    }

    // Kill whatever is left in the command's group (background children on a normal exit,
    // everything on timeout or stop), then collect what is in the pipe; reading stops at the
    // first empty read, so a writer that is still dying cannot keep us here.
    ::kill(-pid, SIGKILL);
    if (pipe_open) read_available(read_end.get(), out, std::numeric_limits<int>::max());
    const int status = reap(pid);

    switch (how) {
      case ending::stopped:
        return {false, with_tail("stopped", out), true};
      case ending::timed_out:
        return {false, with_tail("timed out after " + format_duration(options_.timeout), out),
                true};
      case ending::exited:
        break;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {true, out.result(), true};
    if (WIFSIGNALED(status))
      return {false, with_tail("killed by signal " + std::to_string(WTERMSIG(status)), out),
              true};
    return {false, with_tail("exit code " + std::to_string(WEXITSTATUS(status)), out), true};
  }

 private:
  exec_options options_;
};

}  // namespace

handler make_exec(exec_options options) { return exec_handler(options); }

}  // namespace dispatch::worker::handlers
