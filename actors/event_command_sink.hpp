// The command sink of the notifier: runs `/bin/sh -c <command>` once per event, with the event
// as one JSON object (and a newline) on stdin:
//   {"seq":12,"kind":"task.completed","at":1767225600123,"task":7,"project":"p","worker":"w1",
//    "detail":""}
// ("at" in ms since the epoch; the fields are those of protocol::event_record.)
//
// It has a thread of its own and a bounded queue, so the notifier only ever takes a lock to hand
// events over: a slow or failing command delays later events (they run in order, one at a time)
// but never the notifier. A run that exits non-zero, is killed by a signal, cannot be started or
// outlasts its timeout is tried again after a backoff that doubles from first_backoff up to
// max_backoff; after max_tries the event is given up with an error in the log. When the queue is
// full the oldest waiting event is dropped with a warning.
//
// Destruction stops it: queued events still run (without retries) for up to shutdown_grace, then
// the running command is killed and what is left is dropped, with a warning that says how many.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "protocol/messages.hpp"

namespace dispatch::actors {

struct command_sink_settings {
  std::string command;
  std::size_t capacity = 10'000;  // events waiting; the oldest is dropped beyond it
  std::uint32_t max_tries = 5;
  std::chrono::milliseconds first_backoff{1000};
  std::chrono::milliseconds max_backoff{60'000};
  std::chrono::milliseconds run_timeout{60'000};     // a run taking longer is killed: failed
  std::chrono::milliseconds shutdown_grace{5'000};  // see the destructor
};

// The JSON text handed to the command (without the trailing newline).
std::string event_json(const protocol::event_record& e);

class event_command_sink {
 public:
  explicit event_command_sink(command_sink_settings settings);
  ~event_command_sink();
  event_command_sink(const event_command_sink&) = delete;
  event_command_sink& operator=(const event_command_sink&) = delete;

  // Queues the events in order; never waits for a command.
  void push(const std::vector<protocol::event_record>& events);

 private:
  void run();
  // One run of the command for `e`; true when it exited 0.
  bool deliver(const protocol::event_record& e, std::chrono::steady_clock::time_point deadline);
  bool stopping() const;

  const command_sink_settings settings_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<protocol::event_record> queue_;   // guarded by mutex_
  bool stop_ = false;                          // guarded by mutex_
  std::chrono::steady_clock::time_point stop_deadline_;  // set with stop_
  std::uint64_t dropped_ = 0;                  // guarded by mutex_; reported, then reset
  std::optional<std::chrono::steady_clock::time_point> last_drop_warning_;  // guarded by mutex_
  std::thread thread_;                         // last: starts once everything above exists
};

}  // namespace dispatch::actors
