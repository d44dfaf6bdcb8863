// dispatcherd's settings: defaults, then the config file (--config), then the command line.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dispatcher/peer_limiter.hpp"
#include "dispatcher/request_limits.hpp"
#include "persistence/task_store.hpp"

namespace dispatch {

struct daemon_config {
  std::string data_dir = "./data";
  std::string work_endpoint = "tcp://127.0.0.1:5555";
  std::string admin_endpoint = "tcp://127.0.0.1:5556";
  std::chrono::milliseconds scale_interval{1000};
  std::chrono::milliseconds reserve_cooldown{10000};
  std::chrono::milliseconds heartbeat{1000};
  std::uint32_t liveness = 3;
  std::chrono::milliseconds recovery_grace{5000};
  std::chrono::milliseconds retry_base{1000};
  std::chrono::milliseconds retry_cap{300000};
  std::chrono::milliseconds idempotency_window{24 * 3600 * 1000};
  std::chrono::milliseconds retention{7 * 24 * 3600 * 1000};
  std::string metrics_address = "127.0.0.1:9464";  // port 0 = off
  std::string events_endpoint = "tcp://127.0.0.1:5557";
  std::chrono::milliseconds event_retention{7 * 24 * 3600 * 1000};
  std::string event_command;
  persistence::durability durability = persistence::durability::wal;
  std::size_t resident_tasks = 100000;
  std::size_t max_frame = 4 << 20;
  request_limits limits;
  peer_limits peers;
  bool auth = true;
  std::string tokens_file;                // empty: <data_dir>/tokens
  std::vector<std::string> token_hashes;  // more entries, in the tokens file's line format
  std::string curve_secret_key;  // server secret key file; set = CURVE on work and admin
  std::string curve_allow;       // client public keys allowed in (required with CURVE)
  std::size_t threads = 1;       // actor scheduler threads; 0 = one per core
  std::vector<int> storage_cpus;  // the store's threads run only here; empty: anywhere
  std::string log_level = "info";
};

// Parses argv (and the file named by --config). Returns an exit code when the program should stop
// now: 0 after --help, 2 after a bad option or value (the message names it and is already
// printed). Returns nullopt when `out` is ready to use.
std::optional<int> parse_daemon_config(int argc, char** argv, daemon_config& out);

}  // namespace dispatch
