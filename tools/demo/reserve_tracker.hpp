// Follows the reserve-pool workers through successive `stats` replies and notes when each one is
// engaged and released, so the demo can show the reserve pool at work.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "protocol/messages.hpp"

namespace dispatch::demo {

struct reserve_change {
  enum class kind {
    engaged,   // standby -> engaged: the dispatcher called it in because tasks backed up
    released,  // engaged -> standby: idle for the cooldown, sent back
    gone,      // left the worker list while engaged (disconnected or declared lost)
  };
  std::string worker;
  kind what = kind::engaged;
  double at_seconds = 0;  // since the demo's start
};

class reserve_tracker {
 public:
  // Compares `workers` with the previous observation and returns what changed. A worker seen
  // for the first time counts as a change only if it already is engaged: only then is there
  // something (an engagement) that happened during the demo.
  std::vector<reserve_change> observe(const std::vector<protocol::worker_info>& workers,
                                      double at_seconds);

  // The first observation is a baseline: what is engaged then was engaged before the demo.
  void learn(const std::vector<protocol::worker_info>& workers);

  bool engaged_now() const;
  const std::vector<reserve_change>& history() const { return history_; }

 private:
  std::map<std::string, std::string> state_;  // reserve worker id -> last seen state
  std::vector<reserve_change> history_;
};

std::string what_happened(const reserve_change& c);  // e.g. "reserve-1 engaged"
std::string describe(const reserve_change& c);       // e.g. "+1.2s reserve-1 engaged"

}  // namespace dispatch::demo
