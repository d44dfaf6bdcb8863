#include "dispatcher/zap_handler.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <utility>

namespace dispatch {
namespace {

// RFC 27 request frames, after the REP socket has removed the envelope:
//   version "1.0", request id, domain, address, identity, mechanism, credentials...
constexpr std::size_t frame_version = 0;
constexpr std::size_t frame_request_id = 1;
constexpr std::size_t frame_domain = 2;
constexpr std::size_t frame_address = 3;
constexpr std::size_t frame_mechanism = 5;
constexpr std::size_t frame_credentials = 6;
// CURVE sends exactly one credential, PLAIN two, NULL none; anything longer is read to its end
// (so the next request starts clean) but not kept.
constexpr std::size_t max_frames = 16;
constexpr std::size_t curve_key_size = 32;

// How long the serving thread waits before it looks at the stop flag again.
constexpr std::chrono::milliseconds stop_check_interval{100};

std::string z85_of(const zmq::message_t& key) {
  std::array<char, 41> text{};
  if (zmq_z85_encode(text.data(), key.data<std::uint8_t>(), key.size()) == nullptr) return {};
  return std::string(text.data(), 40);
}

}  // namespace

zap_handler::zap_handler(zmq::context_t& context, allowed_keys allowed, refusal_fn on_refusal,
                         std::string domain)
    : context_(context),
      domain_(std::move(domain)),
      on_refusal_(std::move(on_refusal)),
      allowed_(std::make_shared<const allowed_keys>(std::move(allowed))) {}

zap_handler::~zap_handler() { stop(); }

bool zap_handler::start(std::string& error) {
  if (thread_.joinable()) {
    error = "the ZAP handler is already running";
    return false;
  }
  try {
    socket_ = zmq::socket_t(context_, zmq::socket_type::rep);
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind(zap_endpoint);
  } catch (const zmq::error_t& e) {
    error = std::string("cannot bind the ZAP handler to ") + zap_endpoint + ": " + e.what();
    socket_.close();
    return false;
  }
  stop_requested_.store(false);
  running_.store(true);
  // Starting the thread is a full memory barrier, which is what libzmq asks for before a socket
  // changes threads.
  thread_ = std::thread([this] { run(); });
  return true;
}

void zap_handler::stop() {
  stop_requested_.store(true);
  if (thread_.joinable()) thread_.join();
  socket_.close();  // after join: the thread no longer touches it
  running_.store(false);
}

void zap_handler::set_allowed(allowed_keys allowed) {
  auto fresh = std::make_shared<const allowed_keys>(std::move(allowed));
  std::lock_guard<std::mutex> lock(allowed_mutex_);
  allowed_ = std::move(fresh);
}

void zap_handler::run() {
  zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
  try {
    while (!stop_requested_.load()) {
      zmq::poll(&item, 1, stop_check_interval);
      if (!(item.revents & ZMQ_POLLIN)) continue;
      // A burst of handshakes is served before the next poll, but never past a stop request.
      while (!stop_requested_.load() && (socket_.get(zmq::sockopt::events) & ZMQ_POLLIN))
        serve_one();
    }
  } catch (const zmq::error_t&) {
    // ETERM: the context is being terminated under us; its owner is shutting down. Stop serving.
  }
  // Unbound first: a closed socket's endpoint is freed later by libzmq's reaper thread, and a
  // handler started again at once could find it still taken.
  try {
    socket_.unbind(zap_endpoint);
  } catch (const zmq::error_t&) {
    // ETERM: the context is going away, and the endpoint with it.
  }
  // Closed here too, not only in stop(): a context being terminated waits for this socket.
  socket_.close();
  running_.store(false);
}

void zap_handler::serve_one() {
  std::vector<zmq::message_t> frames;
  bool more = true;
  while (more) {
    zmq::message_t frame;
    if (!socket_.recv(frame, zmq::recv_flags::dontwait)) return;  // cannot happen mid-message
    more = frame.more();
    if (frames.size() < max_frames) frames.push_back(std::move(frame));
  }

  decision d{"500", reason_malformed, {}};
  std::string peer_address;
  if (frames.size() < frame_credentials || frames[frame_version].to_string_view() != "1.0") {
    d = {"500", reason_malformed, {}};
  } else {
    peer_address = frames[frame_address].to_string();
    d = decide(frames);
  }

  // Counted before the reply goes: whoever sees the handshake's outcome (a message through, a
  // failed handshake) then also sees it in the counts.
  if (std::string_view(d.code) == "200") {
    accepted_.fetch_add(1);
  } else {
    refuse(peer_address, d.reason);
  }

  // The reply echoes the request id, so libzmq can match it to the handshake it holds.
  const std::string request_id =
      frames.size() > frame_request_id ? frames[frame_request_id].to_string() : std::string();
  const std::array<std::string_view, 6> reply = {"1.0",    request_id, d.code,
                                                  d.reason, d.user_id,  ""};  // no metadata
  for (std::size_t i = 0; i < reply.size(); ++i)
    socket_.send(zmq::buffer(reply[i]),
                 i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
}

zap_handler::decision zap_handler::decide(const std::vector<zmq::message_t>& frames) const {
  if (!domain_.empty() && frames[frame_domain].to_string_view() != domain_)
    return {"400", reason_domain_not_served, {}};
  // NULL and PLAIN would let a peer in on its word alone. PLAIN's password frame is not looked at.
  if (frames[frame_mechanism].to_string_view() != "CURVE")
    return {"400", reason_curve_required, {}};
  if (frames.size() != frame_credentials + 1 || frames[frame_credentials].size() != curve_key_size)
    return {"500", reason_malformed, {}};

  const zmq::message_t& key = frames[frame_credentials];
  std::shared_ptr<const allowed_keys> allowed;
  {
    std::lock_guard<std::mutex> lock(allowed_mutex_);
    allowed = allowed_;
  }
  auto found = allowed->find(key.to_string());
  if (found == allowed->end()) return {"400", reason_key_not_allowed, {}};
  return {"200", "OK", found->second.empty() ? z85_of(key) : found->second};
}

void zap_handler::refuse(const std::string& peer_address, const std::string& reason) {
  refused_.fetch_add(1);
  if (!on_refusal_) return;
  try {
    on_refusal_(peer_address, reason);
  } catch (...) {
    // A failing metric or log call must not take authentication down with it: an exception
    // escaping this thread would terminate the daemon.
  }
}

}  // namespace dispatch
