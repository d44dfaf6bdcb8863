// The dispatcher's socket side driven by hand, as the scheduler's serving thread drives it, with
// a real client over tcp loopback: here, sending replies at once from a job
// (io_bridge::send_output_now). The whole request path runs under every integration test.
#include "dispatcher/io_bridge.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "protocol/codec.hpp"

namespace {

using namespace dispatch;
using namespace std::chrono_literals;

// An eventfd nobody writes: the loop's wake-up descriptor, which these tests never need.
struct quiet_fd {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  quiet_fd() { REQUIRE(fd >= 0); }
  ~quiet_fd() { ::close(fd); }
};

std::string heartbeat(std::uint64_t id) {
  std::string bytes;
  protocol::encode(protocol::request{id, protocol::heartbeat{}}, bytes);
  return bytes;
}

}  // namespace

TEST_CASE("io_bridge sends queued replies at once and tells whether a request waits") {
  zmq::context_t context;
  io_settings settings;
  settings.work_endpoint = "tcp://127.0.0.1:*";
  settings.admin_endpoint = "tcp://127.0.0.1:*";
  std::vector<inbound> delivered;
  io_bridge io(context, settings, [&](std::vector<inbound>&& batch) {
    for (auto& in : batch) delivered.push_back(std::move(in));
  });
  std::string error;
  REQUIRE(io.bind(error));
  quiet_fd wake;

  zmq::socket_t client(context, zmq::socket_type::dealer);
  client.set(zmq::sockopt::linger, 0);
  client.set(zmq::sockopt::rcvtimeo, 5000);
  client.connect(io.work_endpoint());

  // Turns of the loop until `n` requests have reached the actors' side.
  auto serve_until_delivered = [&](std::size_t n) {
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    while (delivered.size() < n) {
      REQUIRE(std::chrono::steady_clock::now() < give_up);
      io.wait(false, wake.fd);
      io.handle();
      std::this_thread::sleep_for(1ms);
    }
  };

  REQUIRE(client.send(zmq::buffer(heartbeat(1)), zmq::send_flags::none));
  serve_until_delivered(1);
  REQUIRE(delivered[0].request.id == 1);

  // A reply queued by an actor leaves on send_output_now alone, with no turn of the loop; no
  // request is waiting.
  io.replies()->send(delivered[0].from, 1, protocol::heartbeat_reply{});
  CHECK(io.send_output_now());
  zmq::message_t got;
  REQUIRE(client.recv(got, zmq::recv_flags::none));
  protocol::reply reply;
  protocol::decode_failure why;
  REQUIRE(protocol::decode(got.to_string_view(), reply, why));
  CHECK(reply.id == 1);
  CHECK(std::holds_alternative<protocol::heartbeat_reply>(reply.body));

  // A turn of the loop with nothing to do: the sockets were read to the end.
  io.wait(false, wake.fd);
  io.handle();

  // A request that has arrived and is not yet read: send_output_now says so (it may take a
  // moment to travel), and the next turn of the loop still reads it, although asking the socket
  // took the descriptor's signal that it had arrived.
  REQUIRE(client.send(zmq::buffer(heartbeat(2)), zmq::send_flags::none));
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (io.send_output_now()) {
    REQUIRE(std::chrono::steady_clock::now() < give_up);
    std::this_thread::sleep_for(1ms);
  }
  CHECK(delivered.size() == 1);
  serve_until_delivered(2);
  CHECK(delivered[1].request.id == 2);
  io.close();
}
