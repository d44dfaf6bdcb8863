#include "dispatchctl/admin_client.hpp"

#include <cerrno>
#include <utility>
#include <vector>

#include <zmq_addon.hpp>

#include "protocol/duration.hpp"
#include "protocol/codec.hpp"

namespace dispatch::ctl {
namespace {

using clock = std::chrono::steady_clock;

// Waits until `events` is ready on `socket` or the deadline passes. A signal interrupting the
// poll is not the dispatcher's fault, so EINTR just polls again for the remaining time.
bool wait_for(zmq::socket_t& socket, short events, clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() < 0) return false;
    zmq::pollitem_t item{socket.handle(), 0, events, 0};
    try {
      if (zmq::poll(&item, 1, left) > 0 && (item.revents & events) != 0) return true;
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      continue;
    }
    if (clock::now() >= deadline) return false;
  }
}

}  // namespace

admin_client::admin_client(zmq::context_t& context, std::string endpoint,
                           std::chrono::milliseconds timeout, std::string token,
                           std::optional<security::curve_client_keys> curve)
    : context_(context),
      endpoint_(std::move(endpoint)),
      timeout_(timeout),
      token_(std::move(token)),
      curve_(std::move(curve)) {}

std::optional<client_error> admin_client::connect() {
  zmq::socket_t socket(context_, zmq::socket_type::dealer);
  // linger 0: an unanswered request must not keep the process alive at exit.
  socket.set(zmq::sockopt::linger, 0);
  // immediate: queue only on a finished connection, so "writable" means "connected" and a
  // request is never parked for a peer that is not there.
  socket.set(zmq::sockopt::immediate, true);
  // Retry refused connections quickly: the dispatcher may be starting while we wait.
  socket.set(zmq::sockopt::reconnect_ivl, 100);
  socket.set(zmq::sockopt::connect_timeout, static_cast<int>(timeout_.count()));
  if (curve_) {
    std::string error;
    if (!security::apply_curve_client(socket, curve_->client, curve_->server_public, error))
      return client_error{client_error::kind::bad_endpoint, error};
  }
  try {
    socket.connect(endpoint_);
  } catch (const zmq::error_t& e) {
    return client_error{client_error::kind::bad_endpoint,
                        "cannot use endpoint '" + endpoint_ + "': " + e.what()};
  }
  socket_.emplace(std::move(socket));
  return std::nullopt;
}

call_result admin_client::call(const protocol::request_body& body) {
  const auto deadline = clock::now() + timeout_;
  const client_error timed_out{client_error::kind::timeout,
                               "no reply from " + endpoint_ + " within " +
                                   format_duration(timeout_) +
                                   (curve_ ? " (is dispatcherd running, with CURVE, and does its "
                                             "allow list have this client's key?)"
                                           : " (is dispatcherd running?)")};
  if (!socket_) {
    if (auto failure = connect()) return *failure;
  }
  zmq::socket_t& socket = *socket_;

  const std::uint64_t id = next_id_++;
  std::string frame;
  protocol::encode(protocol::request{id, body, token_}, frame);
  if (!wait_for(socket, ZMQ_POLLOUT, deadline)) return timed_out;
  // One frame, no empty delimiter: the dispatcher's ROUTER sees [identity, request].
  if (!socket.send(zmq::buffer(frame), zmq::send_flags::dontwait)) return timed_out;

  for (;;) {
    if (!wait_for(socket, ZMQ_POLLIN, deadline)) return timed_out;
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(socket, std::back_inserter(parts), zmq::recv_flags::dontwait))
      continue;
    // The reply is the last frame; tolerate an empty delimiter frame before it in case the
    // dispatcher answers in REQ/REP envelope style.
    if (parts.empty()) continue;
    const zmq::message_t& last = parts.back();
    protocol::reply reply;
    protocol::decode_failure why;
    if (!protocol::decode(std::string_view(last.data<char>(), last.size()), reply, why))
      return client_error{client_error::kind::bad_reply,
                          "unreadable reply from " + endpoint_ + ": " + why.message};
    // id 0 on an error means the dispatcher could not read our id; that error is still ours.
    const bool unattributed_error =
        reply.id == 0 && std::holds_alternative<protocol::error>(reply.body);
    // Anything else with another id answers an earlier request that timed out: skip it.
    if (reply.id == id || unattributed_error) return std::move(reply.body);
  }
}

}  // namespace dispatch::ctl
