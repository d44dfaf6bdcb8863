#include "worker-agent/wake_pipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <system_error>

namespace dispatch::worker {

wake_pipe::wake_pipe() {
  std::array<int, 2> fds{};
  // Non-blocking on both ends: a full pipe already means "wake up", so a writer never needs to
  // wait, and draining must stop when it is empty.
  if (::pipe2(fds.data(), O_NONBLOCK | O_CLOEXEC) != 0)
    throw std::system_error(errno, std::generic_category(), "pipe2");
  read_end_ = unique_fd(fds[0]);
  write_end_ = unique_fd(fds[1]);
}

void wake_pipe::notify() noexcept {
  const char byte = 1;
  // EAGAIN (pipe full) is fine: the loop is woken already.
  [[maybe_unused]] const auto n = ::write(write_end_.get(), &byte, 1);
}

void wake_pipe::drain() noexcept {
  std::array<char, 64> buf{};
  while (::read(read_end_.get(), buf.data(), buf.size()) > 0) {
  }
}

}  // namespace dispatch::worker
