// The dispatcher's ZeroMQ side, served by one thread (the actor scheduler's, through io_loop).
// It owns the two ROUTER sockets (work and admin) and the outbox replies come back through,
// decodes every inbound frame, answers undecodable or misplaced messages itself (so bad input
// never reaches the actors and nothing is stored from it), and hands good requests to `deliver`:
// all those read in one wake-up together, so a burst of requests costs the actors one message,
// not one each.
#pragma once

#include <poll.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "dispatcher/envelope.hpp"
#include "dispatcher/io_loop.hpp"
#include "dispatcher/outbox.hpp"
#include "dispatcher/peer_limiter.hpp"
#include "dispatcher/request_limits.hpp"
#include "security/curve_keys.hpp"

namespace dispatch::security {
class token_table;
}

namespace dispatch {

struct io_settings {
  std::string work_endpoint = "tcp://127.0.0.1:5555";
  std::string admin_endpoint = "tcp://127.0.0.1:5556";
  std::size_t max_frame = 4 << 20;  // larger bodies get a too_large error
  // Heartbeats wait up to this long to travel to the actors with other requests: their answer is
  // not urgent (liveness is counted in seconds), and a thousand idle workers heartbeating then
  // cost the actors a few wake-ups a second instead of a thousand. Any other request sends them
  // on at once.
  std::chrono::milliseconds heartbeat_hold{50};
  request_limits limits;
  peer_limits peers;
  // The accepted tokens; nullptr turns authentication off (every peer may send anything its
  // endpoint serves). Must outlive the bridge and every actor that sees its principals.
  const security::token_table* tokens = nullptr;
  // Set: the work and admin endpoints speak CURVE with this key pair (a ZAP handler must be
  // serving in the context before bind()).
  std::optional<security::curve_key_pair> curve;
};

// A request the I/O thread answered with an error itself, for the daemon's metrics and log.
struct refusal {
  endpoint_kind endpoint;
  protocol::error_code code;
  const std::string& reason;
  std::string_view peer;  // the peer's address as ZeroMQ reports it, e.g. "127.0.0.1"
};

class io_bridge final : public io_loop {
 public:
  using deliver_fn = std::function<void(std::vector<inbound>&&)>;
  using refusal_fn = std::function<void(const refusal&)>;

  io_bridge(zmq::context_t& context, io_settings settings, deliver_fn deliver,
            refusal_fn refused = {});
  io_bridge(const io_bridge&) = delete;
  io_bridge& operator=(const io_bridge&) = delete;

  // Binds every socket. On failure returns false and `error` names the endpoint and the reason.
  // Call before the loop is served.
  bool bind(std::string& error);
  // Where the actors send replies. Close it once close() has run.
  std::shared_ptr<outbox> replies() const { return outbox_; }
  bool wait(bool block, int wake_fd) override;
  bool output_waiting() const override { return outbox_->waiting(); }
  void handle() override;
  bool send_output_now() override;
  void close() override;
  // The endpoints actually bound (resolves port 0 / wildcard).
  std::string work_endpoint() const;
  std::string admin_endpoint() const;

 private:
  // Reads and handles what the socket holds, up to a burst. True when it may hold more.
  bool drain_router(zmq::socket_t& router, endpoint_kind kind);
  struct sent_to {
    bool work = false;
    bool admin = false;
  };
  sent_to drain_outbox();
  // Reads the frames of one message into parts_. False when the socket had none.
  bool read_frames(zmq::socket_t& router);
  void handle_frames(zmq::socket_t& router, endpoint_kind kind);
  // Checks the token and what it allows; sets `in.from.who`. False when refused (answered).
  bool authorize(zmq::socket_t& router, inbound& in, const zmq::message_t& body);
  void reply_error(zmq::socket_t& router, const peer_address& to, std::uint64_t request_id,
                   protocol::error_code code, std::string message,
                   const zmq::message_t* body = nullptr);
  void send_to(zmq::socket_t& router, const peer_address& to, const std::string& body);

  io_settings settings_;
  deliver_fn deliver_;
  refusal_fn refused_;
  peer_limiter limiter_;
  std::string peer_key_;
  std::string rate_text_;  // --max-rate as the operator wrote it ("20", "0.5"), for refusals
  zmq::socket_t work_;
  zmq::socket_t admin_;
  std::shared_ptr<outbox> outbox_;
  reply_batch taken_;                 // replies being sent, reused between wake-ups
  std::vector<inbound> delivering_;   // requests read and not yet handed to the actors
  bool urgent_ = false;               // delivering_ holds more than heartbeats
  std::chrono::steady_clock::time_point hold_until_;  // when held heartbeats must go
  std::vector<zmq::message_t> parts_;  // frames of the message being read
  enum { work_slot, admin_slot, outbox_slot, wake_slot, slot_count };
  pollfd fds_[slot_count];
  // A send may consume the signal that messages arrived, so a socket replies went out on is read
  // on the next turn whether its descriptor fired or not, as is one read to its burst limit.
  bool work_unread_ = true;
  bool admin_unread_ = true;
  std::string encode_buffer_;
};

}  // namespace dispatch
