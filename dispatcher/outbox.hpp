// The way out for replies: any thread (any actor) hands a reply and its return address to the
// outbox, which passes it over an inproc PUSH socket to the I/O thread, the only thread that
// touches the ROUTER sockets. A mutex serialises the PUSH socket, which ZeroMQ allows to move
// between threads behind a full memory barrier; one shared socket keeps the file descriptor count
// flat however many actors reply.
#pragma once

#include <mutex>
#include <string>

#include <zmq.hpp>

#include "dispatcher/envelope.hpp"

namespace dispatch {

class outbox {
 public:
  // `address` is the inproc endpoint the I/O thread has bound its PULL socket to.
  outbox(zmq::context_t& context, const std::string& address);
  outbox(const outbox&) = delete;
  outbox& operator=(const outbox&) = delete;

  void send(const peer_address& to, const protocol::reply& reply);
  void send(const peer_address& to, std::uint64_t request_id, protocol::reply_body body);
  // Closes the socket; must happen before the ZeroMQ context is destroyed. Later sends are dropped.
  void close();

 private:
  std::mutex mutex_;
  zmq::socket_t push_;
  std::string buffer_;  // reused encode buffer, guarded by mutex_
  bool closed_ = false;
};

// Frames on the inproc channel: [endpoint byte][routing id][delimiter byte][msgpack body].
constexpr int outbox_frames = 4;

}  // namespace dispatch
