#include "bench/support/daemon.hpp"

#include <cstdio>
#include <stdexcept>
#include <thread>

namespace dispatch::bench {

dispatcher_daemon::dispatcher_daemon(daemon_options options)
    : options_(std::move(options)), scratch_("dispatch-bench") {
  data_ = options_.data_dir.empty() ? scratch_.path() + "/data" : options_.data_dir;
  const auto ports = free_ports(2);
  work_ = "tcp://127.0.0.1:" + std::to_string(ports[0]);
  admin_ = "tcp://127.0.0.1:" + std::to_string(ports[1]);
  start();
}

dispatcher_daemon::~dispatcher_daemon() = default;

void dispatcher_daemon::spawn() {
  std::vector<std::string> argv = {options_.binary,
                                   "--data-dir",
                                   data_,
                                   "--work-endpoint",
                                   work_,
                                   "--admin-endpoint",
                                   admin_,
                                   "--metrics-address",
                                   "127.0.0.1:0",
                                   "--events-endpoint",
                                   "off",
                                   "--durability",
                                   options_.durability,
                                   "--log-level",
                                   "info"};
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  process_.reset();  // a previous process is stopped first (no-op after stop())
  spawned_ = std::chrono::steady_clock::now();
  process_ = std::make_unique<child_process>(
      argv, scratch_.path() + "/dispatcherd-" + std::to_string(++starts_) + ".log");
}

void dispatcher_daemon::wait_ready() {
  // The probe is a fresh connection each time: a request sent before the daemon bound its
  // endpoint would otherwise be answered late and blur the start time.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!process_->running())
      throw std::runtime_error("dispatcherd exited during start:\n" + process_->log_tail());
    // Authentication may be on: the credentials file exists before the endpoints answer.
    tokens_ = credentials::load(data_);
    wire_client probe(context_, admin_, tokens_.token(role::admin));
    probe.send(protocol::get_stats{});
    if (auto r = probe.receive(std::chrono::milliseconds(100))) {
      if (std::holds_alternative<protocol::stats>(r->body)) {
        start_duration_ = std::chrono::steady_clock::now() - spawned_;
        return;
      }
    }
  }
  throw std::runtime_error("dispatcherd did not become ready:\n" + process_->log_tail());
}

void dispatcher_daemon::start() {
  spawn();
  wait_ready();
}

bool dispatcher_daemon::stop() {
  if (!process_ || process_->stop(std::chrono::seconds(20))) return true;
  // A daemon that ignores SIGTERM is a finding, not something to hide behind the SIGKILL.
  std::fprintf(stderr, "warning: dispatcherd did not exit within 20 s of SIGTERM; killed\n");
  return false;
}

protocol::stats dispatcher_daemon::stats() {
  wire_client admin(context_, admin_, tokens_.token(role::admin));
  return expect<protocol::stats>(admin.call(protocol::get_stats{}, std::chrono::seconds(60)));
}

}  // namespace dispatch::bench
