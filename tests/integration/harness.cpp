#include "tests/integration/harness.hpp"

#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "protocol/codec.hpp"
#include "security/token_hash.hpp"

namespace dispatch::testing {

std::string tcp_endpoint(int port) { return "tcp://127.0.0.1:" + std::to_string(port); }

wire_client::wire_client(const std::string& endpoint, std::string token)
    : context_(1), socket_(context_, zmq::socket_type::dealer), token_(std::move(token)) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.connect(endpoint);
}

std::uint64_t wire_client::send(protocol::request_body body) {
  const auto id = next_id_++;
  std::string bytes;
  protocol::encode(protocol::request{id, std::move(body), token_}, bytes);
  send_raw(bytes);
  return id;
}

protocol::reply wire_client::call(protocol::request_body body, std::chrono::milliseconds timeout) {
  return wait_reply(send(std::move(body)), timeout);
}

protocol::reply wire_client::wait_reply(std::uint64_t id, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    for (auto it = parked_.begin(); it != parked_.end(); ++it) {
      if (it->id == id) {
        auto r = std::move(*it);
        parked_.erase(it);
        return r;
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto r = receive(left);
    if (!r) break;
    parked_.push_back(std::move(*r));
  }
  throw std::runtime_error("no reply to request " + std::to_string(id));
}

void wire_client::send_raw(const std::string& bytes) { send_frames({bytes}); }

void wire_client::send_frames(const std::vector<std::string>& frames) {
  for (std::size_t i = 0; i < frames.size(); ++i)
    socket_.send(zmq::buffer(frames[i]),
                 i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
}

std::optional<protocol::reply> wire_client::receive(std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
  zmq::message_t msg;
  if (!socket_.recv(msg)) return std::nullopt;
  protocol::reply r;
  protocol::decode_failure why;
  if (!protocol::decode(std::string_view(msg.data<char>(), msg.size()), r, why))
    throw std::runtime_error("undecodable reply: " + why.message);
  return r;
}

std::vector<task_id> submit(wire_client& c, std::vector<protocol::task_spec> specs) {
  return expect<protocol::submitted>(c.call(protocol::submit{std::move(specs)})).ids;
}

task status_of(wire_client& c, task_id id) {
  return expect<protocol::task_info>(c.call(protocol::get_task{id})).t;
}

protocol::error_code error_of(const protocol::reply& r) {
  if (auto* e = std::get_if<protocol::error>(&r.body)) return e->code;
  throw std::runtime_error("expected an error reply, got '" +
                           std::string(protocol::type_name(r.body)) + "'");
}

protocol::task_spec echo_task(std::string project, std::string payload) {
  protocol::task_spec s;
  s.project = std::move(project);
  s.type = "echo";
  s.payload = std::move(payload);
  return s;
}

protocol::register_worker worker_spec(std::string id, std::uint32_t capacity,
                                      std::vector<std::string> types) {
  protocol::register_worker r;
  r.worker = std::move(id);
  r.types = std::move(types);
  r.capacity = capacity;
  return r;
}

std::vector<protocol::job> fetch(wire_client& w, std::uint32_t max, std::uint32_t wait_ms) {
  // The reply may take the whole long poll; allow it and then some.
  return expect<protocol::jobs>(
             w.call(protocol::fetch{max, wait_ms}, std::chrono::milliseconds(wait_ms) + 5s))
      .jobs;
}

dispatcher_process::dispatcher_process(dispatcher_options options)
    : options_(std::move(options)),
      data_(scratch_.path() + "/data") {
  const auto ports = free_ports(2);
  work_port_ = ports[0];
  admin_port_ = ports[1];
  start();
}

void dispatcher_process::start() {
  std::vector<std::string> argv = {dispatcherd_path(), "--data-dir",    data_,
                                   "--work-endpoint",  work_endpoint(), "--admin-endpoint",
                                   admin_endpoint()};
  for (auto& a : test_token_args()) argv.push_back(std::move(a));
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  // The events and metrics endpoints have fixed default ports; tests running in parallel would
  // collide on them, so they are off unless a test asks for them.
  const auto given = [&](const char* option) {
    return std::find(options_.extra_args.begin(), options_.extra_args.end(), option) !=
           options_.extra_args.end();
  };
  if (!given("--events-endpoint")) argv.insert(argv.end(), {"--events-endpoint", "off"});
  if (!given("--metrics-address")) argv.insert(argv.end(), {"--metrics-address", "127.0.0.1:0"});
  process_ = std::make_unique<child_process>(
      argv, scratch_.path() + "/dispatcherd-" + std::to_string(++starts_) + ".log");
  // Ready means this process says so: it logs "ready" once its sockets are bound. Answering on
  // the admin port alone is not enough: if another test's daemon took the same port a moment
  // earlier, this one is about to fail to bind while that one answers.
  const bool ready = wait_until(
      [&] {
        if (!process_->running()) return true;
        if (process_->log().find("dispatcherd ready:") == std::string::npos) return false;
        try {
          wire_client probe(admin_endpoint());
          probe.call(protocol::get_stats{}, 200ms);
          return true;
        } catch (const std::exception&) {
          return false;
        }
      },
      15s);
  if (!ready || !process_->running())
    throw std::runtime_error("dispatcherd did not start:\n" + process_->log());
}

void dispatcher_process::stop(int sig) {
  process_->signal(sig);
  if (!process_->wait(10s)) throw std::runtime_error("dispatcherd did not stop");
}

std::vector<std::string> test_token_args() {
  return {"--token-hash",
          std::string("admin * ") + security::hash_text(test_admin_token) + " integration-tests"};
}

std::string dispatcher_process::token(const std::string& role) const {
  std::ifstream file(credentials_path());
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream words(line);
    std::string r, t;
    if (words >> r >> t && r == role) return t;
  }
  throw std::runtime_error("no " + role + " token in " + credentials_path());
}

protocol::stats dispatcher_process::stats() {
  wire_client admin(admin_endpoint());
  return expect<protocol::stats>(admin.call(protocol::get_stats{}));
}

std::unique_ptr<child_process> start_agent(const dispatcher_process& d, const std::string& id,
                                           std::vector<std::string> extra_args) {
  std::vector<std::string> argv = {worker_agent_path(), "--endpoint", d.work_endpoint(), "--id",
                                   id, "--token-file", d.credentials_path()};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  return std::make_unique<child_process>(argv, d.dir() + "/agent-" + id + ".log");
}

const protocol::worker_info* find_worker(const protocol::stats& s, const std::string& id) {
  for (const auto& w : s.workers)
    if (w.id == id) return &w;
  return nullptr;
}

std::string dispatcherd_path() { return DISPATCHERD_PATH; }
std::string worker_agent_path() { return WORKER_AGENT_PATH; }
std::string dispatchctl_path() { return DISPATCHCTL_PATH; }

}  // namespace dispatch::testing
