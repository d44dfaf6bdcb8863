#include "dispatcher/outbox.hpp"

#include "protocol/codec.hpp"

namespace dispatch {

outbox::outbox(zmq::context_t& context, const std::string& address)
    : push_(context, zmq::socket_type::push) {
  push_.set(zmq::sockopt::linger, 0);
  // Replies must never be dropped because the I/O thread is briefly behind.
  push_.set(zmq::sockopt::sndhwm, 0);
  push_.connect(address);
}

void outbox::send(const peer_address& to, const protocol::reply& reply) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return;
  protocol::encode(reply, buffer_);
  const char endpoint = static_cast<char>(to.endpoint);
  const char delimiter = to.delimiter ? 1 : 0;
  // With the unlimited queue above, a send only fails when the I/O thread's PULL end is gone
  // (shutdown): the reply is dropped then, where a blocking send would hang the calling actor and
  // with it the daemon's exit. Once the first frame is in, ZeroMQ takes the rest of the message.
  if (!push_.send(zmq::const_buffer(&endpoint, 1), zmq::send_flags::sndmore | zmq::send_flags::dontwait))
    return;
  push_.send(zmq::buffer(to.routing_id), zmq::send_flags::sndmore);
  push_.send(zmq::const_buffer(&delimiter, 1), zmq::send_flags::sndmore);
  push_.send(zmq::buffer(buffer_), zmq::send_flags::none);
}

void outbox::send(const peer_address& to, std::uint64_t request_id, protocol::reply_body body) {
  send(to, protocol::reply{request_id, std::move(body)});
}

void outbox::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!closed_) push_.close();
  closed_ = true;
}

}  // namespace dispatch
