#include "dispatcher/wake_signal.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace dispatch {

wake_signal::wake_signal() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0)
    throw std::runtime_error(std::string("cannot create an eventfd: ") + std::strerror(errno));
}

wake_signal::~wake_signal() { ::close(fd_); }

void wake_signal::signal() {
  const std::uint64_t one = 1;
  // Cannot fail short of a counter overflow, which a reset after every wake-up rules out.
  [[maybe_unused]] const auto n = ::write(fd_, &one, sizeof one);
}

void wake_signal::reset() {
  std::uint64_t count = 0;
  // EAGAIN when nothing was signalled: already quiet.
  [[maybe_unused]] const auto n = ::read(fd_, &count, sizeof count);
}

}  // namespace dispatch
