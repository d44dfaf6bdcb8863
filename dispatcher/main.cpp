// dispatcherd: opens the store, recovers unfinished work, starts the actors (whose scheduler
// thread also serves the ZeroMQ sockets), and runs until SIGTERM or SIGINT, then stops in the
// order that loses nothing: no new input, actors finish, queued writes land, sockets close.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <thread>

#include <caf/all.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "actors/dispatcher_actor.hpp"
#include "actors/io_driven_scheduler.hpp"
#include "actors/notifier_actor.hpp"
#include "actors/persistence_actor.hpp"
#include "dispatcher/daemon_config.hpp"
#include "dispatcher/daemon_tokens.hpp"
#include "dispatcher/io_bridge.hpp"
#include "dispatcher/outbox.hpp"
#include "dispatcher/refusal_reporter.hpp"
#include "dispatcher/zap_handler.hpp"
#include "metrics/dispatcher_metrics.hpp"

namespace {

using namespace dispatch;

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("dispatcherd");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ dispatcherd %^%l%$ %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}

// Signals are taken by sigwait in main, never by a handler, so every other thread must block them.
sigset_t shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// Loads the server key and the allow list, and starts the ZAP handler that checks every client
// key during the CURVE handshake.
bool start_curve(const daemon_config& cfg, zmq::context_t& context,
                 const std::shared_ptr<metrics::dispatcher_metrics>& metrics, io_settings& io_cfg,
                 std::unique_ptr<zap_handler>& zap, std::string& error) {
  security::curve_key_pair server;
  security::curve_allow_list allowed;
  if (!security::read_secret_key_file(cfg.curve_secret_key, server.secret_key, error) ||
      !security::public_key_of(server.secret_key, server.public_key, error) ||
      !security::read_allow_list(cfg.curve_allow, allowed, error))
    return false;
  zap = std::make_unique<zap_handler>(
      context, allowed.names, [metrics](const std::string& peer, const std::string& reason) {
        metrics->handshake_refused(reason);
        spdlog::warn("refused a connection from {}: {}", peer.empty() ? "unknown" : peer, reason);
      });
  if (!zap->start(error)) return false;
  io_cfg.curve = server;
  spdlog::info("CURVE on: server public key {}, {} client keys allowed", server.public_key,
               allowed.names.size());
  return true;
}

int run(const daemon_config& cfg, const sigset_t& signals) {
  std::unique_ptr<persistence::task_store> opened;
  if (auto s =
          persistence::task_store::open({cfg.data_dir, cfg.durability, cfg.storage_cpus}, opened);
      !s.is_ok()) {
    spdlog::critical("{}", s.to_string());
    return 1;
  }
  actors::shared_store store = std::move(opened);
  auto recovered = std::make_shared<persistence::recovered_state>();
  if (auto s = store->recover(*recovered, cfg.resident_tasks); !s.is_ok()) {
    spdlog::critical("cannot recover from the store in {}: {}", cfg.data_dir, s.to_string());
    return 1;
  }

  // Declared before the actor system: requests carry pointers to its principals.
  security::token_table tokens;
  if (cfg.auth) {
    std::string error;
    if (!load_daemon_tokens(cfg, tokens, error)) {
      spdlog::critical("{}", error);
      return 1;
    }
  } else {
    spdlog::warn("authentication is off: anyone who reaches the endpoints may do anything");
  }
  auto metrics = std::make_shared<metrics::dispatcher_metrics>(cfg.metrics_address);

  zmq::context_t zmq_context;
  // Before the io bridge (destroyed after its sockets) and serving before they bind.
  std::unique_ptr<zap_handler> zap;
  io_settings io_cfg;
  if (!cfg.curve_secret_key.empty()) {
    std::string error;
    if (!start_curve(cfg, zmq_context, metrics, io_cfg, zap, error)) {
      spdlog::critical("{}", error);
      return 1;
    }
  }
  caf::actor dispatcher;  // set before the I/O thread starts delivering
  io_cfg.work_endpoint = cfg.work_endpoint;
  io_cfg.admin_endpoint = cfg.admin_endpoint;
  io_cfg.max_frame = cfg.max_frame;
  io_cfg.limits = cfg.limits;
  io_cfg.peers = cfg.peers;
  io_cfg.tokens = cfg.auth ? &tokens : nullptr;
  io_bridge io(
      zmq_context, io_cfg,
      [&dispatcher](std::vector<inbound>&& batch) {
        caf::anon_send(dispatcher, actors::inbound_atom::value, std::move(batch));
      },
      refusal_reporter(metrics));
  std::string bind_error;
  if (!io.bind(bind_error)) {
    spdlog::critical("{}", bind_error);
    return 1;
  }
  auto out = io.replies();

  caf::actor_system_config caf_cfg;
  // The scheduler's first thread also serves the sockets, so requests and replies cross no thread
  // between the sockets and the actors (actors/io_driven_queue.hpp).
  caf_cfg.load<actors::io_driven_scheduler>();
  // One scheduler thread by default. The dispatcher actor is the serial part of the daemon and
  // runs on one thread at a time anyway; project and worker actors are light, and RocksDB, the
  // notifier and queries have threads of their own (detached actors). More threads only add
  // wake-ups.
  const std::size_t threads =
      cfg.threads > 0 ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  caf_cfg.set("scheduler.max-threads", threads);
  // An actor handles one message per turn (CAF's default: its whole mailbox), so the replies of
  // one message go out before the next is handled rather than after all of them.
  caf_cfg.set("scheduler.max-throughput", std::size_t{1});
  caf::actor_system system{caf_cfg};
  auto persistence = actors::spawn_persistence(system, store, metrics);
  actors::notifier_settings events;
  events.events_endpoint = cfg.events_endpoint;
  events.data_dir = cfg.data_dir;
  events.retention = cfg.event_retention;
  events.command = cfg.event_command;
  events.storage_cpus = cfg.storage_cpus;
  auto notifier = actors::spawn_notifier(system, zmq_context, events);
  actors::dispatcher_settings settings;
  settings.liveness = {cfg.heartbeat, cfg.liveness};
  settings.scale_interval = cfg.scale_interval;
  settings.reserve_cooldown = cfg.reserve_cooldown;
  settings.recovery_grace = cfg.recovery_grace;
  settings.retry_base = cfg.retry_base;
  settings.retry_cap = cfg.retry_cap;
  settings.idempotency_window = cfg.idempotency_window;
  settings.retention = cfg.retention;
  settings.resident_tasks = cfg.resident_tasks;
  auto& scheduler_queue = actors::io_driven_queue_of(system);
  dispatcher = actors::spawn_dispatcher(
      system, settings, std::move(recovered), store, persistence, notifier, out,
      [&scheduler_queue] { return scheduler_queue.send_output_now(); }, metrics);

  scheduler_queue.attach(io);
  std::string storage_cpus;
  for (const int cpu : cfg.storage_cpus)
    storage_cpus += (storage_cpus.empty() ? "" : ",") + std::to_string(cpu);
  spdlog::info(
      "dispatcherd ready: work {} admin {} events {} metrics {} data {} durability {} "
      "storage cpus {}",
      io.work_endpoint(), io.admin_endpoint(),
      cfg.events_endpoint.empty() ? "off" : cfg.events_endpoint,
      metrics->endpoint().empty() ? "off" : metrics->endpoint(), cfg.data_dir,
      cfg.durability == persistence::durability::fsync ? "fsync" : "wal",
      storage_cpus.empty() ? "any" : storage_cpus);

  int received = 0;
  sigwait(&signals, &received);
  spdlog::info("signal {} received: shutting down", received);

  scheduler_queue.detach();  // no more requests; replies already queued are sent
  // Nobody reads replies any more: actors still finishing drop theirs instead of waiting.
  out->close();
  {
    caf::scoped_actor self{system};
    self->send_exit(dispatcher, caf::exit_reason::user_shutdown);
    self->wait_for(dispatcher);
    self->send(persistence, actors::shutdown_atom::value);  // writes already queued still land
    self->wait_for(persistence);
    self->send_exit(notifier, caf::exit_reason::user_shutdown);
    self->wait_for(notifier);
  }
  spdlog::info("dispatcherd stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A write past a file size limit must fail with EFBIG, which the store reports, rather than
  // kill the daemon.
  std::signal(SIGXFSZ, SIG_IGN);
  const auto signals = shutdown_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  dispatch::daemon_config cfg;
  if (auto code = dispatch::parse_daemon_config(argc, argv, cfg)) return *code;
  setup_logging(cfg.log_level);
  try {
    return run(cfg, signals);
  } catch (const std::exception& e) {
    spdlog::critical("fatal: {}", e.what());
    return 1;
  }
}
