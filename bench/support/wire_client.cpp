#include "bench/support/wire_client.hpp"

#include <fstream>
#include <sstream>

#include "protocol/codec.hpp"

namespace dispatch::bench {

credentials credentials::load(const std::string& data_dir) {
  credentials c;
  std::ifstream in(data_dir + "/credentials");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string name, token;
    if (!(fields >> name >> token)) continue;
    if (name == "admin") c.admin = token;
    if (name == "producer") c.producer = token;
    if (name == "worker") c.worker = token;
  }
  return c;
}

const std::string& credentials::token(role r) const {
  switch (r) {
    case role::admin:
      return admin;
    case role::producer:
      return producer;
    case role::worker:
      break;
  }
  return worker;
}

wire_client::wire_client(zmq::context_t& context, const std::string& endpoint, std::string token)
    : socket_(context, zmq::socket_type::dealer), token_(std::move(token)) {
  // Long enough for a last goodbye to leave, short enough not to hold up a run whose daemon
  // is gone.
  socket_.set(zmq::sockopt::linger, 200);
  // The producer keeps several 100 KB submits in flight and a slow consumer must not make
  // ZeroMQ drop or block them at the default high-water marks of 1000 messages.
  socket_.set(zmq::sockopt::sndhwm, 0);
  socket_.set(zmq::sockopt::rcvhwm, 0);
  socket_.connect(endpoint);
}

std::uint64_t wire_client::send(protocol::request_body body) {
  const std::uint64_t id = next_id_++;
  protocol::request request;
  request.id = id;
  request.token = token_;  // empty: the key is left out
  request.body = std::move(body);
  protocol::encode(request, frame_);
  socket_.send(zmq::buffer(frame_), zmq::send_flags::none);
  return id;
}

std::optional<protocol::reply> wire_client::receive(std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
  zmq::message_t msg;
  if (!socket_.recv(msg, zmq::recv_flags::dontwait)) return std::nullopt;
  protocol::reply r;
  protocol::decode_failure why;
  if (!protocol::decode(std::string_view(msg.data<char>(), msg.size()), r, why))
    throw std::runtime_error("undecodable reply: " + why.message);
  return r;
}

protocol::reply wire_client::call(protocol::request_body body, std::chrono::milliseconds timeout) {
  const std::uint64_t id = send(std::move(body));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto r = receive(left);
    if (r && r->id == id) return std::move(*r);
  }
  throw std::runtime_error("no reply to request " + std::to_string(id));
}

}  // namespace dispatch::bench
