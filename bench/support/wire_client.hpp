// The bench's client of the dispatch wire protocol: one ZeroMQ DEALER connection that encodes
// requests with the project's codec (protocol/codec.hpp), adds the access token of its role, and
// decodes replies.
//
// Tokens live here and nowhere else: a daemon with authentication writes
// <data-dir>/credentials ("<role> <token>" lines for admin, producer and worker); a client reads
// it after the daemon is ready and puts the token of its role into every request as the
// top-level key "token". Without the file no token is sent (older daemons ignore unknown keys).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <zmq.hpp>

#include "protocol/messages.hpp"

namespace dispatch::bench {

enum class role { admin, producer, worker };

// The tokens of a data directory; empty strings when it has no credentials file.
struct credentials {
  std::string admin;
  std::string producer;
  std::string worker;

  static credentials load(const std::string& data_dir);
  const std::string& token(role r) const;
};

class wire_client {
 public:
  // `token` empty: requests carry no token.
  wire_client(zmq::context_t& context, const std::string& endpoint, std::string token);
  wire_client(const wire_client&) = delete;
  wire_client& operator=(const wire_client&) = delete;

  // Sends a request with a fresh id (a counter from 1) and returns the id.
  std::uint64_t send(protocol::request_body body);
  // The next reply, waiting at most `timeout`; nullopt when none came. Throws on a reply the
  // codec refuses (the bench must not go on with garbage).
  std::optional<protocol::reply> receive(std::chrono::milliseconds timeout);
  // Sends and waits for the reply to that request, dropping other replies (for the simple
  // request-reply exchanges of setup and admin queries). Throws on timeout.
  protocol::reply call(protocol::request_body body,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10));

  zmq::socket_t& socket() { return socket_; }

 private:
  zmq::socket_t socket_;
  std::string token_;
  std::uint64_t next_id_ = 1;
  std::string frame_;  // reused encoding buffer: the hot loops send millions of frames
};

// The reply's body as T, or an exception naming the error (or the unexpected reply type).
template <class T>
const T& expect(const protocol::reply& r) {
  if (const auto* e = std::get_if<protocol::error>(&r.body))
    throw std::runtime_error("error reply: " + std::string(protocol::to_string(e->code)) + ": " +
                             e->message);
  if (const auto* t = std::get_if<T>(&r.body)) return *t;
  throw std::runtime_error("unexpected reply type");
}

}  // namespace dispatch::bench
