#include "dispatcher/outbox.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "protocol/codec.hpp"

namespace dispatch {

outbox::outbox() : wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (wake_fd_ < 0)
    throw std::runtime_error(std::string("cannot create the outbox eventfd: ") +
                             std::strerror(errno));
}

outbox::~outbox() { ::close(wake_fd_); }

void outbox::send(const peer_address& to, const protocol::reply& reply) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return;
    protocol::encode(reply, encoded_);
    wake = queued_.entries.empty();
    queued_.entries.push_back(
        {to.endpoint, to.delimiter, to.routing_id, queued_.bytes.size(), encoded_.size()});
    queued_.bytes += encoded_;
    waiting_.store(true, std::memory_order_relaxed);
  }
  if (wake) {
    const std::uint64_t one = 1;
    // Cannot fail short of a counter overflow, which the reader's reset rules out.
    [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
  }
}

void outbox::send(const peer_address& to, std::uint64_t request_id, protocol::reply_body body) {
  send(to, protocol::reply{request_id, std::move(body)});
}

void outbox::take(reply_batch& into) {
  into.clear();
  std::uint64_t count = 0;
  // Reset before the swap: a reply queued after the swap finds the queue empty and wakes again.
  [[maybe_unused]] const auto n = ::read(wake_fd_, &count, sizeof count);
  std::lock_guard<std::mutex> lock(mutex_);
  std::swap(into, queued_);
  waiting_.store(false, std::memory_order_relaxed);
}

void outbox::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
  queued_.clear();
}

}  // namespace dispatch
