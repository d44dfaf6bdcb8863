// The event log: every event the notifier handles, numbered and kept for a retention window, so
// that a subscriber that missed some (it was not connected, or its socket dropped them) can read
// them back. A RocksDB instance of its own (data_dir/events), apart from the task store: events
// are many, small and short-lived, and their writes must never queue behind the store's.
//
// Contract:
//  * append() numbers the events it is given last_seq()+1, +2, ... and stores them as one
//    RocksDB record (one write, WAL, no fsync: events survive a crash of the process, and losing
//    the last ones to a power cut costs history, not tasks). The numbers are used up even when
//    the write fails, so a number once published is never given to another event by this
//    process.
//  * open() recovers last_seq() from the newest record (its first seq + its count - 1) and from a
//    mark purge() leaves, so a log purged empty does not start again at 1: numbering continues
//    across restarts. A damaged newest record does not fail open(); numbering then continues
//    after the most events it could hold.
//  * read() returns stored events above a seq in seq order, filtered by project and kind,
//    starting in the middle of a record when the seq falls there.
//  * purge() deletes whole records whose events are all older than a time, oldest first, in
//    bounded steps.
//  * Records written by earlier releases, one event each, are read and purged alike.
//  * One owner: none of the methods may run concurrently (the notifier actor is the only user).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "persistence/status.hpp"
#include "protocol/messages.hpp"

namespace dispatch::persistence {

// A query is the protocol's `events` request: events with seq > after, at most `limit` of them,
// of `project` if given, whose kind starts with one of `kinds` if any are given ("task." for
// every task event, "worker.lost" for one kind; the same prefix rule as a ZeroMQ subscription
// to the PUB socket, so history and live stream filter alike).
using event_query = protocol::list_events;

// What one purge() call did.
struct event_purge_result {
  std::size_t removed = 0;     // events deleted; an unreadable record counts as one
  std::size_t unreadable = 0;  // records that could not be decoded (deleted: see purge())
  bool more = false;           // stopped at max_items with old records left: call again
};

class event_log {
 public:
  // Each read() examines at most this many events by default (see read()).
  static constexpr std::size_t default_max_examined = 100'000;

  // Opens (creating if needed) the log in `dir`. On failure the status names the directory and
  // RocksDB's reason, and `out` is empty.
  static status open(const std::string& dir, std::unique_ptr<event_log>& out);
  ~event_log();
  event_log(const event_log&) = delete;
  event_log& operator=(const event_log&) = delete;

  // Sets seq on every event (see the contract) and stores them all, as one record, or none of
  // them. Call it with the events that arrive together rather than one at a time: the cost is
  // per call far more than per event.
  status append(std::vector<protocol::event_record>& events);

  // Fills out.events with the matching events in seq order and sets out.next to the seq to pass
  // as `after` to continue: the last seq returned when `limit` was reached, else the last seq
  // examined (events examined but filtered out need no second look), or q.after if there was
  // nothing to examine. At most `max_examined` events (not records; those at or below q.after
  // in the first record do not count) are examined, so a filter that matches rarely cannot make
  // one call walk the whole log; such a call may return fewer than `limit` events (even none)
  // with next > q.after: the caller continues from next until it stops moving. A record that
  // cannot be decoded fails the read with corruption when the read reaches it.
  status read(const event_query& q, protocol::event_list& out,
              std::size_t max_examined = default_max_examined) const;

  // Highest seq handed out so far (0 for an empty log that never had an event).
  std::uint64_t last_seq() const;

  // Deletes, oldest first, the records (each the events of one append()) whose every event has
  // `at` < older_than, at most max_items (> 0) records per call, in one atomic write: max_items
  // bounds the deletions a call stages, which is what it costs. Stops at the first record that
  // is not old: records are appended in time order, so the rest are newer (a wall clock stepped
  // back may keep a few old events a round longer; they go once the records before them do).
  // Records that cannot be decoded are deleted too, since every read() reaching them would fail.
  status purge(millis older_than, std::size_t max_items, event_purge_result& out);

 private:
  struct impl;
  // Lets open() use make_unique while the constructor stays unusable from outside: only
  // event_log can make a passkey (the explicit constructor also rules out `{}`).
  class passkey {
    explicit passkey() = default;
    friend class event_log;
  };

 public:
  event_log(passkey, std::unique_ptr<impl> p);

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace dispatch::persistence
