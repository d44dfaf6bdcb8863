// CURVE key files and allow lists (security/curve_keys), and the ZAP handler
// (dispatcher/zap_handler) deciding real handshakes over tcp loopback.
#include <catch2/catch.hpp>

#include "tests/support/files.hpp"
#include "tests/support/temp_dir.hpp"

#include <sys/stat.h>  // stat, chmod

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "dispatcher/zap_handler.hpp"
#include "security/curve_keys.hpp"

namespace {

using namespace std::chrono_literals;
using dispatch::zap_handler;
namespace sec = dispatch::security;
using dispatch::testing::mode_of;
using dispatch::testing::write_text;

// Generous bounds: reached only when something is broken, never on the passing path, except
// for `quiet_period`, the time a refused peer gets to (wrongly) deliver something.
constexpr auto handshake_timeout = 2000ms;
constexpr auto quiet_period = 200ms;

sec::curve_key_pair fresh_pair() {
  sec::curve_key_pair pair;
  std::string error;
  REQUIRE(sec::generate_key_pair(pair, error));
  return pair;
}

std::string binary_key(const std::string& z85) {
  std::string binary;
  REQUIRE(sec::z85_to_binary(z85, binary));
  return binary;
}



// The refusals the ZAP handler reported, waited for from the test thread.
class refusal_log {
 public:
  struct refusal {
    std::string address;
    std::string reason;
  };

  zap_handler::refusal_fn callback() {
    return [this](const std::string& address, const std::string& reason) {
      std::lock_guard<std::mutex> lock(mutex_);
      refusals_.push_back({address, reason});
      changed_.notify_all();
    };
  }
  std::optional<refusal> wait_first(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return !refusals_.empty(); })) return std::nullopt;
    return refusals_.front();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<refusal> refusals_;
};

// Handshake outcomes of the server socket, from libzmq's socket monitor, so the tests wait for
// the handshake to be decided instead of sleeping.
class handshake_monitor {
 public:
  handshake_monitor(zmq::context_t& context, zmq::socket_t& socket)
      : pair_(context, zmq::socket_type::pair) {
    const char* address = "inproc://curve-test-monitor";
    const int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                       ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    REQUIRE(zmq_socket_monitor(socket.handle(), address, events) == 0);
    pair_.set(zmq::sockopt::linger, 0);
    pair_.connect(address);
  }

  // The next handshake event, or 0 when none came in time.
  std::uint16_t next(std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{pair_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) <= 0) return 0;
    zmq::message_t event;
    zmq::message_t endpoint;
    REQUIRE(pair_.recv(event));
    REQUIRE(event.more());
    REQUIRE(pair_.recv(endpoint));
    std::uint16_t id = 0;
    std::memcpy(&id, event.data(), sizeof id);  // first 2 bytes: event id, host byte order
    return id;
  }

  static bool failed(std::uint16_t event) {
    return event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
           event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
  }

 private:
  zmq::socket_t pair_;
};

std::optional<std::vector<zmq::message_t>> receive(zmq::socket_t& socket,
                                                   std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) <= 0) return std::nullopt;
  std::vector<zmq::message_t> parts;
  do {
    parts.emplace_back();
    REQUIRE(socket.recv(parts.back()));
  } while (parts.back().more());
  return parts;
}

// A ROUTER with CURVE, behind a ZAP handler that lets in `allowed` (named "worker-1").
struct curve_server {
  zmq::context_t context;
  sec::curve_key_pair keys = fresh_pair();
  sec::curve_key_pair allowed = fresh_pair();
  refusal_log refusals;
  zap_handler zap{context, {{binary_key(allowed.public_key), "worker-1"}}, refusals.callback()};
  zmq::socket_t router{context, zmq::socket_type::router};
  std::optional<handshake_monitor> monitor;
  std::string endpoint;

  curve_server() {
    std::string error;
    REQUIRE(zap.start(error));  // before the CURVE socket binds
    router.set(zmq::sockopt::linger, 0);
    REQUIRE(sec::apply_curve_server(router, keys, error));
    monitor.emplace(context, router);
    router.bind("tcp://127.0.0.1:*");
    endpoint = router.get(zmq::sockopt::last_endpoint);
  }

  zmq::socket_t client() {
    zmq::socket_t dealer(context, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::linger, 0);
    return dealer;
  }

  // The first handshake outcome, skipping none: every client here makes one kind of attempt.
  std::uint16_t handshake() { return monitor->next(handshake_timeout); }
};

void send_text(zmq::socket_t& socket, const std::string& text) {
  // DEALER queues on the pipe made at connect(), whatever the handshake then decides.
  REQUIRE(socket.send(zmq::buffer(text), zmq::send_flags::dontwait));
}

}  // namespace

TEST_CASE("an allowed CURVE client gets through and hears back", "[curve]") {
  curve_server server;
  zmq::socket_t dealer = server.client();
  std::string error;
  REQUIRE(sec::apply_curve_client(dealer, server.allowed, server.keys.public_key, error));
  dealer.connect(server.endpoint);
  send_text(dealer, "hello");

  auto request = receive(server.router, handshake_timeout);
  REQUIRE(request);
  REQUIRE(request->size() == 2);
  CHECK((*request)[1].to_string() == "hello");
  // The ZAP user id is the allow list's name for the key.
  CHECK(std::string((*request)[1].gets("User-Id")) == "worker-1");

  server.router.send((*request)[0], zmq::send_flags::sndmore);
  server.router.send(zmq::str_buffer("world"));
  auto reply = receive(dealer, handshake_timeout);
  REQUIRE(reply);
  REQUIRE(reply->size() == 1);
  CHECK((*reply)[0].to_string() == "world");
  CHECK(server.zap.accepted_count() >= 1);
  CHECK(server.zap.refused_count() == 0);
}

TEST_CASE("a CURVE client whose key is not allowed gets nothing through", "[curve]") {
  curve_server server;
  zmq::socket_t dealer = server.client();
  std::string error;
  REQUIRE(sec::apply_curve_client(dealer, fresh_pair(), server.keys.public_key, error));
  dealer.connect(server.endpoint);
  send_text(dealer, "let me in");

  auto refusal = server.refusals.wait_first(handshake_timeout);
  REQUIRE(refusal);
  CHECK(refusal->reason == zap_handler::reason_key_not_allowed);
  CHECK(refusal->address == "127.0.0.1");
  CHECK(server.handshake() == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
  CHECK_FALSE(receive(server.router, quiet_period));
  CHECK(server.zap.accepted_count() == 0);

  SECTION("a key added to the allow list gets in from the next handshake on") {
    sec::curve_key_pair newcomer = fresh_pair();
    zmq::socket_t late = server.client();
    REQUIRE(sec::apply_curve_client(late, newcomer, server.keys.public_key, error));
    server.zap.set_allowed({{binary_key(newcomer.public_key), ""}});
    late.connect(server.endpoint);
    send_text(late, "now?");
    auto request = receive(server.router, handshake_timeout);
    REQUIRE(request);
    CHECK(request->back().to_string() == "now?");
    // Without a name the user id is the key itself.
    CHECK(std::string(request->back().gets("User-Id")) == newcomer.public_key);
  }
}

TEST_CASE("a CURVE client with the wrong server key gets nothing through", "[curve]") {
  curve_server server;
  zmq::socket_t dealer = server.client();
  std::string error;
  REQUIRE(sec::apply_curve_client(dealer, server.allowed, fresh_pair().public_key, error));
  dealer.connect(server.endpoint);
  send_text(dealer, "hello?");

  CHECK(handshake_monitor::failed(server.handshake()));
  CHECK_FALSE(receive(server.router, quiet_period));
  CHECK(server.zap.accepted_count() == 0);
}

TEST_CASE("a client without CURVE gets nothing through", "[curve]") {
  curve_server server;
  zmq::socket_t dealer = server.client();
  dealer.connect(server.endpoint);
  send_text(dealer, "plain text");

  CHECK(handshake_monitor::failed(server.handshake()));
  CHECK_FALSE(receive(server.router, quiet_period));
  CHECK(server.zap.accepted_count() == 0);
}

TEST_CASE("the ZAP handler refuses NULL clients of a socket that asks ZAP", "[curve]") {
  // A NULL-mechanism server socket with a ZAP domain puts its handshakes to the handler too; the
  // handler must not let them in on their word.
  zmq::context_t context;
  refusal_log refusals;
  zap_handler zap{context, {}, refusals.callback()};
  std::string error;
  REQUIRE(zap.start(error));
  zmq::socket_t router(context, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.set(zmq::sockopt::zap_domain, zap_handler::default_domain);
  router.bind("tcp://127.0.0.1:*");
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(router.get(zmq::sockopt::last_endpoint));
  send_text(dealer, "plain text");

  auto refusal = refusals.wait_first(handshake_timeout);
  REQUIRE(refusal);
  CHECK(refusal->reason == zap_handler::reason_curve_required);
  CHECK_FALSE(receive(router, quiet_period));
}

TEST_CASE("one ZAP handler per context; it stops promptly and may start again", "[curve]") {
  zmq::context_t context;
  zap_handler first{context, {}, {}};
  zap_handler second{context, {}, {}};
  std::string error;
  REQUIRE(first.start(error));
  CHECK(first.running());
  CHECK_FALSE(second.start(error));
  CHECK(error.find("inproc://zeromq.zap.01") != std::string::npos);
  first.stop();
  CHECK_FALSE(first.running());
  first.stop();  // idempotent
  REQUIRE(second.start(error));
}

TEST_CASE("key pairs: files, modes, round trip and refusal to overwrite", "[curve][keys]") {
  dispatch::testing::temp_dir dir("curve-test");
  const std::string prefix = dir.path() + "/server";
  const sec::curve_key_pair pair = fresh_pair();
  std::string error;

  REQUIRE(sec::write_key_pair(prefix, pair, sec::overwrite::refuse, error));
  CHECK(mode_of(prefix + ".key") == 0600);
  CHECK(mode_of(prefix + ".pub") == 0644);

  sec::curve_key_pair read;
  REQUIRE(sec::read_key_pair(prefix, read, error));
  CHECK(read.public_key == pair.public_key);
  CHECK(read.secret_key == pair.secret_key);
  std::string derived;
  REQUIRE(sec::public_key_of(pair.secret_key, derived, error));
  CHECK(derived == pair.public_key);

  const sec::curve_key_pair other = fresh_pair();
  CHECK_FALSE(sec::write_key_pair(prefix, other, sec::overwrite::refuse, error));
  CHECK(error.find(prefix + ".key already exists") != std::string::npos);
  REQUIRE(sec::read_key_pair(prefix, read, error));
  CHECK(read.secret_key == pair.secret_key);  // untouched

  REQUIRE(sec::write_key_pair(prefix, other, sec::overwrite::replace, error));
  REQUIRE(sec::read_key_pair(prefix, read, error));
  CHECK(read.secret_key == other.secret_key);
  CHECK(mode_of(prefix + ".key") == 0600);

  SECTION("an existing .pub alone also refuses, and leaves no .key behind") {
    const std::string lone = dir.path() + "/lone";
    write_text(lone + ".pub", pair.public_key + "\n");
    CHECK_FALSE(sec::write_key_pair(lone, pair, sec::overwrite::refuse, error));
    struct stat info {};
    CHECK(::stat((lone + ".key").c_str(), &info) != 0);
  }
  SECTION("a mixed-up pair is caught") {
    write_text(prefix + ".pub", pair.public_key + "\n");
    CHECK_FALSE(sec::read_key_pair(prefix, read, error));
    CHECK(error.find("does not belong") != std::string::npos);
  }
  SECTION("a secret key file others may read is refused unless asked") {
    REQUIRE(::chmod((prefix + ".key").c_str(), 0644) == 0);
    std::string secret;
    CHECK_FALSE(sec::read_secret_key_file(prefix + ".key", secret, error));
    CHECK(error.find("chmod 600 " + prefix + ".key") != std::string::npos);
    CHECK(sec::read_secret_key_file(prefix + ".key", secret, error, sec::secret_file_mode::any));
    CHECK(secret == other.secret_key);
  }
  SECTION("a pair that does not match is not written") {
    sec::curve_key_pair mixed{pair.public_key, other.secret_key};
    CHECK_FALSE(sec::write_key_pair(dir.path() + "/mixed", mixed, sec::overwrite::refuse, error));
  }
}

TEST_CASE("key files: comments, whitespace and bad text", "[curve][keys]") {
  dispatch::testing::temp_dir dir("curve-test");
  const std::string path = dir.path() + "/peer.pub";
  const std::string key = fresh_pair().public_key;
  std::string read;
  std::string error;

  write_text(path, "# the server\n\n   " + key + " \t\r\n# trailing comment\n");
  REQUIRE(sec::read_public_key_file(path, read, error));
  CHECK(read == key);

  write_text(path, "# the server\nnot-a-key\n");
  CHECK_FALSE(sec::read_public_key_file(path, read, error));
  CHECK(error.find(path + ":2:") != std::string::npos);
  CHECK(error.find("not-a-key") == std::string::npos);  // key text is never echoed

  std::string almost = key;
  almost[7] = '"';  // right length, outside the Z85 alphabet
  write_text(path, almost + "\n");
  CHECK_FALSE(sec::read_public_key_file(path, read, error));
  CHECK(error.find(path + ":1:") != std::string::npos);

  write_text(path, key + "\n" + key + "\n");
  CHECK_FALSE(sec::read_public_key_file(path, read, error));
  CHECK(error.find("more than one key") != std::string::npos);

  write_text(path, "# nothing here\n");
  CHECK_FALSE(sec::read_public_key_file(path, read, error));
  CHECK(error.find(path) != std::string::npos);

  CHECK_FALSE(sec::read_public_key_file(dir.path() + "/missing.pub", read, error));
  CHECK(error.find(dir.path() + "/missing.pub") != std::string::npos);

  CHECK(sec::binary_to_z85(binary_key(key)) == key);
  CHECK_FALSE(sec::is_curve_key(key.substr(1)));
  CHECK(sec::binary_to_z85("short").empty());
}

TEST_CASE("allow lists: names, comments and bad lines", "[curve][keys]") {
  dispatch::testing::temp_dir dir("curve-test");
  const std::string path = dir.path() + "/clients.allow";
  const std::string alice = fresh_pair().public_key;
  const std::string bob = fresh_pair().public_key;
  sec::curve_allow_list list;
  std::string error;

  write_text(path, "# workers\n" + alice + "   worker one \n\n  " + bob + "\n" + alice +
                       " again\n");
  REQUIRE(sec::read_allow_list(path, list, error));
  CHECK(list.errors.empty());
  REQUIRE(list.names.size() == 2);
  CHECK(list.names.at(binary_key(alice)) == "worker one");  // the first name wins
  CHECK(list.names.at(binary_key(bob)).empty());
  CHECK(list.keys().count(binary_key(bob)) == 1);

  write_text(path, alice + "\n# fine\nshort name\n" + bob + "\n" + bob.substr(0, 39) + "\n");
  CHECK_FALSE(sec::read_allow_list(path, list, error));
  REQUIRE(list.errors.size() == 2);
  CHECK(list.errors[0].find(path + ":3:") == 0);
  CHECK(list.errors[1].find(path + ":5:") == 0);
  CHECK(error.find(path + ":3:") != std::string::npos);
  CHECK(error.find("1 more") != std::string::npos);
  CHECK(list.names.size() == 2);  // the good lines are kept

  CHECK_FALSE(sec::read_allow_list(dir.path() + "/missing", list, error));
  CHECK(error.find(dir.path() + "/missing") != std::string::npos);
}
