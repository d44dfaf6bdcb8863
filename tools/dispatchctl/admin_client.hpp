// One request, one reply, over the dispatcher's admin endpoint, bounded by a timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include <zmq.hpp>

#include "protocol/messages.hpp"
#include "security/curve_keys.hpp"

namespace dispatch::ctl {

struct client_error {
  enum class kind {
    bad_endpoint,  // zmq refused the endpoint string: a usage error, not a dispatcher problem
    timeout,       // nothing (matching) came back in time
    bad_reply,     // something came back that is not a protocol reply
  };
  kind what = kind::timeout;
  std::string message;  // complete sentence for the operator, without the program name
};

// A dispatcher `error` reply is a reply like any other; only transport trouble is a
// client_error.
using call_result = std::variant<protocol::reply_body, client_error>;

class admin_client {
 public:
  // Nothing is connected until the first call, so construction cannot fail.
  // `token` goes with every request (empty: none); `curve` set: the connection uses CURVE.
  admin_client(zmq::context_t& context, std::string endpoint, std::chrono::milliseconds timeout,
               std::string token = {},
               std::optional<security::curve_client_keys> curve = std::nullopt);

  // Sends `body` with a fresh request id and waits for the reply carrying that id. The whole
  // exchange, connecting included, is bounded by the timeout: this never blocks longer.
  call_result call(const protocol::request_body& body);

 private:
  std::optional<client_error> connect();

  zmq::context_t& context_;
  std::string endpoint_;
  std::chrono::milliseconds timeout_;
  std::string token_;
  std::optional<security::curve_client_keys> curve_;
  std::optional<zmq::socket_t> socket_;  // created by the first call
  std::uint64_t next_id_ = 1;            // ids are per socket, so a counter is unique enough
};

}  // namespace dispatch::ctl
