// Per-peer admission: how many messages a second each peer may send, and how many peers are
// served at once. Plain C++ (no ZeroMQ), called by the I/O thread for every inbound message
// before it is decoded, so a flooding or multiplying client costs one hash lookup per message
// and the table stays bounded.
//
// A peer is a connection (endpoint and ZeroMQ routing id). It counts as connected from its first
// message until it has been silent for `idle`; ZeroMQ does not tell a ROUTER when a peer leaves,
// so silence is the only sign. Workers heartbeat far more often than that.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

namespace dispatch {

struct peer_limits {
  double rate = 50000;        // messages per second per peer (0 = unlimited); also the burst
  std::size_t max_peers = 10000;
  std::chrono::milliseconds idle{60000};
};

enum class admission { admitted, rate_limited, too_many_peers };

class peer_limiter {
 public:
  using clock = std::chrono::steady_clock;

  explicit peer_limiter(peer_limits limits) : limits_(limits) {}

  admission admit(std::string_view peer, clock::time_point now);
  std::size_t peers() const { return peers_.size(); }

 private:
  struct bucket {
    double tokens = 0;
    clock::time_point last;
  };
  void forget_idle(clock::time_point now);

  peer_limits limits_;
  std::unordered_map<std::string, bucket> peers_;
  std::string key_;  // reused for lookups so a known peer costs no allocation
  clock::time_point next_sweep_{};
};

}  // namespace dispatch
