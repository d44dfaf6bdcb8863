#include "dispatcher/outbox.hpp"

#include "protocol/codec.hpp"

namespace dispatch {

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
  if (wake) wake_.signal();
}

void outbox::send(const peer_address& to, std::uint64_t request_id, protocol::reply_body body) {
  send(to, protocol::reply{request_id, std::move(body)});
}

void outbox::take(reply_batch& into) {
  into.clear();
  // Reset before the swap: a reply queued after the swap finds the queue empty and wakes again.
  wake_.reset();
  std::lock_guard<std::mutex> lock(mutex_);
  std::swap(into, queued_);
  waiting_.store(false, std::memory_order_relaxed);
}

void outbox::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
  queued_.clear();
  waiting_.store(false, std::memory_order_relaxed);
}

}  // namespace dispatch
