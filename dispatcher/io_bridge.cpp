#include "dispatcher/io_bridge.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <sstream>
#include <vector>

#include "dispatcher/authorization.hpp"
#include "dispatcher/outbox.hpp"
#include "protocol/codec.hpp"
#include "security/token_table.hpp"

namespace dispatch {
namespace {

// Messages drained from one socket per wake-up before the others get their turn, so a flood on
// one endpoint cannot starve replies or the other endpoint.
constexpr int burst = 256;

// A hostile peer may announce a huge frame; libzmq drops the connection above this hard limit
// before allocating it. Between max_frame and this limit the peer gets a readable error instead.
std::int64_t hard_frame_limit(std::size_t max_frame) {
  return static_cast<std::int64_t>(max_frame) * 4 + 4096;
}

std::string_view peer_ip(const zmq::message_t* frame) {
  if (!frame) return "unknown";
  // zmq_msg_gets takes a non-const message but only reads its metadata.
  const char* address = zmq_msg_gets(const_cast<zmq::message_t*>(frame)->handle(), "Peer-Address");
  return address ? std::string_view(address) : std::string_view("unknown");
}

}  // namespace

io_bridge::io_bridge(zmq::context_t& context, io_settings settings, deliver_fn deliver,
                     refusal_fn refused)
    : settings_(std::move(settings)),
      deliver_(std::move(deliver)),
      refused_(std::move(refused)),
      limiter_(settings_.peers),
      rate_text_((std::ostringstream() << settings_.peers.rate).str()),
      work_(context, zmq::socket_type::router),
      admin_(context, zmq::socket_type::router),
      outbox_(std::make_shared<outbox>()),
      fds_{{work_.get(zmq::sockopt::fd), POLLIN, 0},
           {admin_.get(zmq::sockopt::fd), POLLIN, 0},
           {outbox_->wake_fd(), POLLIN, 0},
           {-1, POLLIN, 0}} {
  for (auto* s : {&work_, &admin_}) {
    s->set(zmq::sockopt::linger, 0);
    s->set(zmq::sockopt::maxmsgsize, hard_frame_limit(settings_.max_frame));
    // Replies to a slow client are queued, not dropped, up to a generous bound.
    s->set(zmq::sockopt::sndhwm, 100000);
    s->set(zmq::sockopt::rcvhwm, 100000);
  }
}

bool io_bridge::bind(std::string& error) {
  if (settings_.curve)
    for (auto* s : {&work_, &admin_})
      if (!security::apply_curve_server(*s, *settings_.curve, error)) return false;
  auto try_bind = [&](zmq::socket_t& s, const std::string& endpoint, const char* what) {
    try {
      s.bind(endpoint);
      return true;
    } catch (const zmq::error_t& e) {
      error = std::string("cannot bind ") + what + " endpoint " + endpoint + ": " + e.what();
      return false;
    }
  };
  return try_bind(work_, settings_.work_endpoint, "work") &&
         try_bind(admin_, settings_.admin_endpoint, "admin");
}

std::string io_bridge::work_endpoint() const { return work_.get(zmq::sockopt::last_endpoint); }
std::string io_bridge::admin_endpoint() const { return admin_.get(zmq::sockopt::last_endpoint); }

bool io_bridge::wait(bool block, int wake_fd) {
  // A ZeroMQ socket's descriptor only says "something may have changed": once it fires, the
  // socket is read until it has nothing left. zmq::poll would also ask each socket for its events
  // before and after sleeping, a system call each time; polling the descriptors directly and
  // reading until EAGAIN costs one per socket read.
  using clock = std::chrono::steady_clock;
  int timeout = -1;
  if (!block || work_unread_ || admin_unread_)
    timeout = 0;
  else if (!delivering_.empty())  // only held heartbeats: wake up when they are due
    timeout = static_cast<int>(std::max<std::int64_t>(
        0, std::chrono::ceil<std::chrono::milliseconds>(hold_until_ - clock::now()).count()));
  fds_[wake_slot] = {wake_fd, POLLIN, 0};
  // Every thread but main blocks the shutdown signals, so EINTR is not expected; should poll fail
  // anyway, POSIX leaves revents unspecified, so they are cleared and the caller simply waits
  // again.
  if (::poll(fds_, slot_count, timeout) < 0)
    for (auto& f : fds_) f.revents = 0;
  return fds_[wake_slot].revents & POLLIN;
}

void io_bridge::handle() {
  if (fds_[outbox_slot].revents & POLLIN) {
    const auto sent = drain_outbox();
    work_unread_ = work_unread_ || sent.work;
    admin_unread_ = admin_unread_ || sent.admin;
  }
  if (work_unread_ || (fds_[work_slot].revents & POLLIN))
    work_unread_ = drain_router(work_, endpoint_kind::work);
  if (admin_unread_ || (fds_[admin_slot].revents & POLLIN))
    admin_unread_ = drain_router(admin_, endpoint_kind::admin);
  for (auto& f : fds_) f.revents = 0;
  if (!delivering_.empty() && (urgent_ || std::chrono::steady_clock::now() >= hold_until_)) {
    deliver_(std::move(delivering_));
    delivering_.clear();  // a moved-from vector is valid but unspecified
    urgent_ = false;
  }
}

void io_bridge::close() {
  // Replies already handed to the outbox still go out before the sockets close.
  drain_outbox();
  work_.close();
  admin_.close();
}

bool io_bridge::drain_router(zmq::socket_t& router, endpoint_kind kind) {
  for (int i = 0; i < burst; ++i) {
    if (!read_frames(router)) return false;
    handle_frames(router, kind);
  }
  return true;
}

bool io_bridge::read_frames(zmq::socket_t& router) {
  // A ROUTER message is [routing id][optional empty delimiter (REQ clients)][body]. Anything else
  // is read to its end (so the next message starts clean) and answered as malformed.
  auto& parts = parts_;
  parts.clear();
  do {
    parts.emplace_back();
    if (!router.recv(parts.back(), zmq::recv_flags::dontwait)) {
      parts.pop_back();
      break;
    }
  } while (parts.back().more() && parts.size() < 8);
  while (!parts.empty() && parts.back().more()) {  // discard an over-long multipart tail
    zmq::message_t rest;
    if (!router.recv(rest, zmq::recv_flags::dontwait)) break;
    if (!rest.more()) break;
  }
  return !parts.empty();
}

void io_bridge::handle_frames(zmq::socket_t& router, endpoint_kind kind) {
  auto& parts = parts_;
  // A REQ client's reply needs the delimiter back, refusals included, or REQ drops it and hangs.
  peer_address from{kind, parts[0].to_string(), parts.size() == 3 && parts[1].size() == 0};
  // Admission first: a flooding peer costs a table lookup per message, not a decode.
  peer_key_.assign(1, static_cast<char>(kind));
  peer_key_ += from.routing_id;
  switch (limiter_.admit(peer_key_, peer_limiter::clock::now())) {
    case admission::admitted:
      break;
    case admission::rate_limited:
      reply_error(router, from, 0, protocol::error_code::rate_limited,
                  "more than " + rate_text_ +
                      " messages a second from this connection (--max-rate); slow down",
                  &parts.back());
      return;
    case admission::too_many_peers:
      reply_error(router, from, 0, protocol::error_code::too_many_peers,
                  "the dispatcher already serves " + std::to_string(settings_.peers.max_peers) +
                      " connections (--max-peers); try again later",
                  &parts.back());
      return;
  }
  const zmq::message_t* body = nullptr;
  if (parts.size() == 2) {
    body = &parts[1];
  } else if (from.delimiter) {
    body = &parts[2];
  } else {
    reply_error(router, from, 0, protocol::error_code::malformed,
                "expected exactly one body frame (optionally after an empty delimiter)",
                &parts.back());
    return;
  }
  if (body->size() > settings_.max_frame) {
    reply_error(router, from, 0, protocol::error_code::too_large,
                "frame of " + std::to_string(body->size()) + " bytes exceeds the limit of " +
                    std::to_string(settings_.max_frame) + " (--max-frame)",
                body);
    return;
  }

  inbound in{std::move(from), {}};
  protocol::decode_failure why;
  if (!protocol::decode(std::string_view(body->data<char>(), body->size()), in.request, why)) {
    reply_error(router, in.from, why.request_id, why.code, std::move(why.message), body);
    return;
  }
  if (const char* refusal = endpoint_refusal(kind, in.request.body)) {
    reply_error(router, in.from, in.request.id, protocol::error_code::unknown_type,
                std::string(protocol::type_name(in.request.body)) + ": " + refusal, body);
    return;
  }
  if (!authorize(router, in, *body)) return;
  cap_page_sizes(in.request.body, settings_.limits);
  if (auto why = limit_refusal(in.request.body, settings_.limits); !why.empty()) {
    reply_error(router, in.from, in.request.id, protocol::error_code::too_large, std::move(why),
                body);
    return;
  }
  if (delivering_.empty())
    hold_until_ = std::chrono::steady_clock::now() + settings_.heartbeat_hold;
  urgent_ = urgent_ || !std::holds_alternative<protocol::heartbeat>(in.request.body);
  delivering_.push_back(std::move(in));
}

bool io_bridge::authorize(zmq::socket_t& router, inbound& in, const zmq::message_t& body) {
  if (!settings_.tokens) return true;
  using protocol::error_code;
  if (in.request.token.empty()) {
    reply_error(router, in.from, in.request.id, error_code::unauthenticated,
                "this dispatcher requires a token (\"token\" in the request)", &body);
    return false;
  }
  in.from.who = settings_.tokens->authenticate(in.request.token);
  // The token is no longer needed: the actors see only the principal it stands for.
  in.request.token.clear();
  if (!in.from.who) {
    reply_error(router, in.from, in.request.id, error_code::unauthenticated, "unknown token",
                &body);
    return false;
  }
  if (auto why = authorization_refusal(*in.from.who, in.request.body); !why.empty()) {
    reply_error(router, in.from, in.request.id, error_code::forbidden, std::move(why), &body);
    return false;
  }
  return true;
}

bool io_bridge::send_output_now() {
  // Taking from an empty outbox would still cost a read of its eventfd.
  const auto sent = outbox_->waiting() ? drain_outbox() : sent_to{};
  // The descriptor cannot tell (it only fires on a change, and the sends may have consumed that),
  // so ask the socket itself. Asking consumes the descriptor's signal too: a request found
  // waiting must be read on the next turn whether the descriptor fires or not.
  const bool request_waits = (work_.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0;
  work_unread_ = work_unread_ || sent.work || request_waits;
  admin_unread_ = admin_unread_ || sent.admin;
  return !request_waits;
}

io_bridge::sent_to io_bridge::drain_outbox() {
  outbox_->take(taken_);
  sent_to sent;
  for (const auto& r : taken_.entries) {
    const bool work = r.endpoint == endpoint_kind::work;
    (work ? sent.work : sent.admin) = true;
    auto& router = work ? work_ : admin_;
    // Peers that vanished are simply not routable; ROUTER drops those replies by design.
    router.send(zmq::buffer(r.routing_id), zmq::send_flags::sndmore);
    if (r.delimiter) router.send(zmq::message_t(), zmq::send_flags::sndmore);
    router.send(zmq::const_buffer(taken_.bytes.data() + r.offset, r.size), zmq::send_flags::none);
  }
  return sent;
}

void io_bridge::reply_error(zmq::socket_t& router, const peer_address& to,
                            std::uint64_t request_id, protocol::error_code code,
                            std::string message, const zmq::message_t* body) {
  if (refused_) refused_(refusal{to.endpoint, code, message, peer_ip(body)});
  protocol::encode(protocol::reply{request_id, protocol::error{code, std::move(message)}},
                   encode_buffer_);
  send_to(router, to, encode_buffer_);
}

void io_bridge::send_to(zmq::socket_t& router, const peer_address& to, const std::string& body) {
  router.send(zmq::buffer(to.routing_id), zmq::send_flags::sndmore);
  if (to.delimiter) router.send(zmq::message_t(), zmq::send_flags::sndmore);
  router.send(zmq::buffer(body), zmq::send_flags::none);
}

}  // namespace dispatch
