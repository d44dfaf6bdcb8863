// The ZAP handler (ZeroMQ Authentication Protocol, RFC 27) that decides which CURVE clients may
// finish their handshake with the dispatcher's sockets.
//
// Contract:
//  * libzmq puts every security handshake of a context's server sockets to whoever is bound at
//    inproc://zeromq.zap.01 in that context. One zap_handler per zmq::context_t; start() binds
//    that address, and a second handler in the same context fails to start.
//  * start() must succeed before any socket with curve_server=1 binds, and stop() (or the
//    destructor) may run only after those sockets are closed: when nobody serves ZAP, libzmq 4.3
//    admits every CURVE client that knows the server's public key (fail open). A socket without
//    CURVE but with a ZAP domain is put to the handler too, and refused: set the domain only
//    through security::apply_curve_server.
//  * Decisions, one per request:
//      - mechanism CURVE, the client's public key in the allow list -> "200"; the ZAP user id is
//        the key's name from the allow list, or its Z85 text when it has none (a receiving socket
//        sees it as the message property "User-Id").
//      - mechanism CURVE, key not in the allow list -> "400" reason_key_not_allowed.
//      - any other mechanism (NULL, PLAIN, ...) -> "400" reason_curve_required. PLAIN passwords
//        are never read, kept or passed on.
//      - a domain other than the one served (when one is set) -> "400" reason_domain_not_served.
//      - a request not in RFC 27 form -> "500" reason_malformed.
//    Every refusal calls on_refusal(peer_address, reason) on the handler's thread, where
//    peer_address is the request's address frame (the peer's IP address for tcp, possibly empty
//    for other transports) and reason is one of the reason_* texts below, a small fixed set fit
//    for a metric label. Nothing secret is ever passed on. A client that keeps reconnecting is
//    refused (and reported) once per attempt; rate-limit logging in the callback if needed.
//  * on_refusal must be quick and must not use the handler; an exception it throws is swallowed
//    (the handler keeps serving).
//  * stop() returns within about 100 ms plus the time of a running on_refusal call. start() and
//    stop() are for the owning thread; set_allowed() and the counters may be called from any.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

namespace dispatch {

class zap_handler {
 public:
  // 32-byte binary CURVE public key -> name for logs and the ZAP user id ("" = use the Z85 key).
  // security::curve_allow_list::names has this form.
  using allowed_keys = std::map<std::string, std::string>;
  using refusal_fn =
      std::function<void(const std::string& peer_address, const std::string& reason)>;

  static constexpr const char* zap_endpoint = "inproc://zeromq.zap.01";
  // The domain security::apply_curve_server announces by default.
  static constexpr const char* default_domain = "dispatch";

  static constexpr const char* reason_key_not_allowed = "client key not allowed";
  static constexpr const char* reason_curve_required = "CURVE required";
  static constexpr const char* reason_domain_not_served = "ZAP domain not served";
  static constexpr const char* reason_malformed = "malformed ZAP request";

  // Does not bind yet: call start(). `on_refusal` may be empty. `domain` "" serves every domain.
  zap_handler(zmq::context_t& context, allowed_keys allowed, refusal_fn on_refusal,
              std::string domain = default_domain);
  // Stops (see stop()). Destroy the handler before its context.
  ~zap_handler();
  zap_handler(const zap_handler&) = delete;
  zap_handler& operator=(const zap_handler&) = delete;

  // Binds inproc://zeromq.zap.01 and starts serving on a thread of its own. On failure (e.g.
  // another handler is bound in this context) returns false and `error` says why; nothing runs.
  bool start(std::string& error);
  // Stops serving and joins the thread; idempotent. start() may be called again afterwards.
  void stop();
  bool running() const { return running_.load(); }

  // Replaces the allow list (e.g. on a reload); handshakes from then on use the new one.
  // Established connections are not affected.
  void set_allowed(allowed_keys allowed);

  std::uint64_t accepted_count() const { return accepted_.load(); }
  std::uint64_t refused_count() const { return refused_.load(); }

 private:
  struct decision {
    const char* code;    // "200", "400" or "500"
    std::string reason;  // status text: "OK" or one of the reason_* texts
    std::string user_id;
  };

  void run();
  void serve_one();
  // `frames`: the request without its envelope, at least the six fixed frames of RFC 27.
  decision decide(const std::vector<zmq::message_t>& frames) const;
  void refuse(const std::string& peer_address, const std::string& reason);

  zmq::context_t& context_;
  std::string domain_;
  refusal_fn on_refusal_;
  mutable std::mutex allowed_mutex_;
  std::shared_ptr<const allowed_keys> allowed_;  // swapped whole under allowed_mutex_
  zmq::socket_t socket_;                         // used only by the serving thread once started
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> running_{false};
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> refused_{0};
  std::thread thread_;
};

}  // namespace dispatch
