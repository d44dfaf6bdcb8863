// What integration tests need to run the real thing: free loopback ports, scratch directories,
// child processes that are always cleaned up, a raw protocol client, and a running dispatcherd.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "protocol/messages.hpp"
#include "tests/support/child_process.hpp"
#include "tests/support/free_ports.hpp"
#include "tests/support/temp_dir.hpp"

namespace dispatch::testing {

using namespace std::chrono_literals;

std::string tcp_endpoint(int port);

// Every dispatcher_process accepts this admin token besides the ones it made on its first start
// (which tests of the roles read with dispatcher_process::token), so tests that are not about
// authentication need no setup.
constexpr const char* test_admin_token = "dsp_integration-test-admin-token";
// The dispatcherd arguments that make it accept test_admin_token.
std::vector<std::string> test_token_args();

// A DEALER connection speaking the protocol, for tests that act as a worker or producer. Every
// request carries `token` (none when empty).
class wire_client {
 public:
  explicit wire_client(const std::string& endpoint, std::string token = test_admin_token);
  wire_client(const wire_client&) = delete;
  wire_client& operator=(const wire_client&) = delete;

  // Sends a request with a fresh id and returns the reply with that id (other replies that arrive
  // meanwhile are kept for later calls). Throws std::runtime_error on timeout.
  protocol::reply call(protocol::request_body body, std::chrono::milliseconds timeout = 5s);
  // Sends a request and returns its id without waiting.
  std::uint64_t send(protocol::request_body body);
  // Waits for the reply to request `id`.
  protocol::reply wait_reply(std::uint64_t id, std::chrono::milliseconds timeout = 5s);
  // Raw frames, for malformed-input tests.
  void send_raw(const std::string& bytes);
  void send_frames(const std::vector<std::string>& frames);
  std::optional<protocol::reply> receive(std::chrono::milliseconds timeout);

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
  std::string token_;
  std::uint64_t next_id_ = 1;
  std::vector<protocol::reply> parked_;
};

template <class T>
const T& expect(const protocol::reply& r) {
  if (auto* e = std::get_if<protocol::error>(&r.body))
    throw std::runtime_error("error reply: " + e->message);
  return std::get<T>(r.body);
}

// Shorthands for the requests tests make most; each throws if the reply is an error (or, for
// error_of, if it is not one).
std::vector<task_id> submit(wire_client& c, std::vector<protocol::task_spec> specs);
task status_of(wire_client& c, task_id id);
protocol::error_code error_of(const protocol::reply& r);
// An "echo" task of `project`.
protocol::task_spec echo_task(std::string project, std::string payload = {});
protocol::register_worker worker_spec(std::string id, std::uint32_t capacity = 1,
                                      std::vector<std::string> types = {"echo"});
std::vector<protocol::job> fetch(wire_client& w, std::uint32_t max, std::uint32_t wait_ms = 2000);

struct dispatcher_options {
  std::vector<std::string> extra_args;
};

// A real dispatcherd on free ports with its own data directory; ready once it answers `stats`.
class dispatcher_process {
 public:
  explicit dispatcher_process(dispatcher_options options = {});
  // Restarting keeps the ports and the data directory.
  void start();
  void stop(int sig = 15);  // SIGTERM; 9 for a crash
  child_process& process() { return *process_; }

  std::string work_endpoint() const { return tcp_endpoint(work_port_); }
  std::string admin_endpoint() const { return tcp_endpoint(admin_port_); }
  const std::string& data_dir() const { return data_; }
  const std::string& dir() const { return scratch_.path(); }
  // The token dispatcherd made for `role` ("admin", "producer", "worker") on its first start,
  // read from <data>/credentials.
  std::string token(const std::string& role) const;
  std::string credentials_path() const { return data_ + "/credentials"; }
  protocol::stats stats();

 private:
  dispatcher_options options_;
  temp_dir scratch_;
  std::string data_;
  int work_port_ = 0;
  int admin_port_ = 0;
  int starts_ = 0;
  std::unique_ptr<child_process> process_;
};

// A real worker-agent process.
std::unique_ptr<child_process> start_agent(const dispatcher_process& d, const std::string& id,
                                           std::vector<std::string> extra_args = {});

const protocol::worker_info* find_worker(const protocol::stats& s, const std::string& id);

std::string dispatcherd_path();
std::string worker_agent_path();
std::string dispatchctl_path();

}  // namespace dispatch::testing
