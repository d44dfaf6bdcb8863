// Durable home of every task, project setting, idempotency key and the id counter, on RocksDB.
//
// Contract:
//  * apply() writes a batch atomically: after it returns ok, every change in it survives a crash
//    of the process (RocksDB WAL), and with durability::fsync also a power loss. If it returns an
//    error, none of the batch is visible and counts() is unchanged. When RocksDB refuses the write
//    (disk full, file too large, a store turned read-only by an earlier background error, ...)
//    the error is io_error and its message says "refused the write" followed by RocksDB's reason.
//    RocksDB may keep refusing writes after such an error until the store is reopened.
//  * apply() does no reads: a batch is staged from what the caller states (`previous`, the
//    status of a removed task), so group commit costs one RocksDB write however many tasks.
//  * Successive puts of one task in a batch (assigned, then finished, within one group commit)
//    are written as their last state only: the batch is atomic, so the states in between are
//    never visible, and skipping them saves a record write per task under load.
//  * Unfinished tasks (pending, running, scheduled) live apart from finished ones, so that
//    open() and recovery read only the live set however many finished tasks the store holds.
//  * The store keeps a count of tasks per project and status, updated in the same batch as the
//    tasks (puts, removals and purges alike), so counts never drift from the stored tasks as long
//    as callers state statuses truthfully, and need no scan at start.
//  * Finished tasks are indexed (column family "index") by project, type, worker, status and
//    finished_at, in the same atomic write that moves a task into or out of "done", so list()
//    reads only the index entries and records a query needs. A store opened without the index,
//    or with another version of it (an older release, or a crash while building it), gets it
//    built once from "done" at open(): one pass over the finished tasks.
//  * Precondition: created_at does not decrease as ids grow (a task never has an earlier
//    created_at than a task with a lower id). The dispatcher keeps it (recovered_state::
//    last_created_at) so that list() can find a created range as an id range by bisection,
//    with no index entries. Where it does not hold, a created range may miss tasks; it never
//    returns one outside the range.
//  * Idempotency entries (project, key) -> (task id, created_at) are stored apart from tasks and
//    have their own retention: removing or purging a task leaves its entry, and an entry may
//    outlive its task, so a caller that finds an id must be ready for get() to say not_found.
//  * One write at a time: apply(), try_apply() and purge() take the store's write lock, so they
//    may be called from any thread. Reads (recover, get, list, find_idempotent, counts) may come
//    from any thread too.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "persistence/status.hpp"
#include "protocol/messages.hpp"
#include "protocol/task.hpp"

namespace dispatch::persistence {

enum class durability : std::uint8_t {
  wal,    // survives a crash of the process
  fsync,  // survives power loss: the WAL is synced before apply() returns
};

struct store_options {
  std::string dir = "./data";
  durability mode = durability::wal;
  // The store's threads run only on these CPUs (empty: anywhere): RocksDB's flush and
  // compaction threads, which the store sets up itself, and the threads that write and read
  // through it, which pin themselves to cpus() (cpu_pinning.hpp).
  std::vector<int> cpus;
};

using status_counts = std::array<std::uint64_t, task_status_count>;  // index = task_status

// Changes to apply together.
class write_batch {
 public:
  // Inserts or updates a task. `previous` is the status the store holds for it (nullopt for a
  // new task); the per-project counts move from it to t.status.
  // A finished record is immutable until it leaves "done" (a retry, remove_task or purge): its
  // index entries are written when it enters "done" and computed again from `t` when it
  // leaves. A caller that clears t.finished_at on the way out (a retry does) passes the
  // finished_at the store holds as `previous_finished_at`; without it (0, and t.finished_at
  // 0) the task's finish-time entries stay behind. They are harmless for correctness (list()
  // checks every candidate against its record, so a stale entry is read and skipped, never
  // returned) but cost space until the task is gone for good.
  // `t` is taken by value: a caller done with the task moves it in and saves the copy.
  void put_task(task t, std::optional<task_status> previous, millis previous_finished_at = 0);
  void put_project(const std::string& name, const project_settings& settings);
  // Deletes a task, from "done" if t.status is final, else from "live", and takes it off its
  // project's count for t.status. t.status must be the status the store holds (as `previous`
  // for put_task); of a finished task, type, worker, created_at and finished_at must be the
  // stored ones too (its index entries are found from them). Nothing else is used. The task's
  // idempotency entry stays.
  void remove_task(const task& t);
  // Records that `key` in `project` was used by task `id`, submitted at `created_at`; a later
  // entry for the same project and key replaces it. The key must not be empty and the project
  // must not contain '\0' (it separates the two in the stored key); apply() rejects the batch
  // otherwise.
  void put_idempotency(const std::string& project, const std::string& key, task_id id,
                       millis created_at);
  // Highest id handed out so far; recovery continues after it.
  void set_last_id(task_id id);

  bool empty() const {
    return tasks_.empty() && projects_.empty() && keys_.empty() && !last_id_;
  }
  std::size_t size() const {
    return tasks_.size() + projects_.size() + keys_.size() + (last_id_ ? 1 : 0);
  }
  void clear();
  // Moves every change of `other` behind this batch's own (group commit). Task puts and
  // removals keep their order, so a task changed and then removed stays removed.
  void append(write_batch&& other) {
    for (auto& c : other.tasks_) tasks_.push_back(std::move(c));
    for (auto& p : other.projects_) projects_.push_back(std::move(p));
    for (auto& k : other.keys_) keys_.push_back(std::move(k));
    if (other.last_id_ && (!last_id_ || *other.last_id_ > *last_id_)) last_id_ = other.last_id_;
    other.clear();
  }

 private:
  friend class task_store;
  // Puts and removals share one list so that apply() replays them in the caller's order.
  struct task_change {
    task t;                               // a removal carries only the indexed fields
    std::optional<task_status> previous;  // puts only
    bool remove = false;
    millis previous_finished_at = 0;      // puts only; see put_task
  };
  struct key_change {
    std::string project;
    std::string key;
    task_id id = 0;
    millis created_at = 0;
  };
  std::vector<task_change> tasks_;
  std::vector<std::pair<std::string, project_settings>> projects_;
  std::vector<key_change> keys_;
  std::optional<task_id> last_id_;
};

// A pending task as the scheduler sees it, without payload and texts (see recover()).
struct queued_summary {
  task_id id = 0;
  std::string project;
  std::string type;
  std::int32_t priority = 0;
  std::vector<std::string> tags;
  millis deadline = 0;
  bool overdue = false;
};

struct recovered_state {
  std::vector<task> live;  // running, scheduled and pending (see recover()), in id order
  std::vector<queued_summary> queued;  // the other pending tasks, in id order
  task_id last_id = 0;
  // The latest created_at of any stored task (0 if none): new tasks are created at this time
  // or later, whatever the clock says, to keep the created_at order of the contract.
  millis last_created_at = 0;
  std::map<std::string, project_settings> projects;
  std::map<std::string, status_counts> counts;
};

// A query is the protocol's `tasks` request: every filter it names must match. A time range
// [from, to) with either end set matches only tasks that have that time (finished_at 0, i.e.
// not finished, is outside every finished range). `text` is a case-insensitive (ASCII)
// substring of type, title or description.
using task_filter = protocol::list_tasks;

// What one list() call read: lets tests (and a curious operator) see that a selective query
// touched only what it needed.
struct query_stats {
  std::size_t index_entries = 0;  // index keys read, choosing the index included
  std::size_t records = 0;        // task records read and checked against the filter
  // Records read to turn a created range into an id range (see the contract): about
  // 2 log2(ids), whatever the range holds.
  std::size_t bisection_records = 0;
  // How finished tasks were looked for: "none" (the filter rules them out), "scan" (every
  // finished record in id order), "created" (the finished records in the created range's ids),
  // or the index used: "project", "type", "worker", "status", "finished".
  std::string done_plan;
};

// Where a retention round stands between find_expired() calls; the caller keeps it. A new
// (default) cursor starts a round.
struct purge_cursor {
  std::string tasks;        // the next finish time entry to examine; empty: the first
  std::string keys;         // the next idempotency entry to examine; empty: the first
  bool tasks_done = false;  // this round's pass over that side has reached its end
  bool keys_done = false;
};

// What one find_expired() call found: candidates for purge(), which checks each again.
struct expired_entries {
  std::vector<std::string> tasks;  // finish time index entries older than the cutoff
  std::vector<std::string> keys;   // idempotency entries older than theirs, or unreadable
  std::size_t examined = 0;        // entries read, candidates or not; at most max_items
  std::size_t malformed = 0;       // index entries of a form this store never writes: left
  bool more = false;               // the round is not complete: call again with the cursor

  bool empty() const { return tasks.empty() && keys.empty(); }
  // Moves up to `n` candidates (tasks first) into a set of their own, for one purge() call.
  expired_entries take(std::size_t n);
};

// What one purge() call did.
struct purge_result {
  // Finished tasks deleted, per project and status: what the counts lost.
  std::map<std::string, status_counts> removed;
  std::size_t tasks_removed() const {
    std::size_t n = 0;
    for (const auto& [project, counts] : removed)
      for (const auto c : counts) n += c;
    return n;
  }
  std::size_t keys_removed = 0;  // idempotency entries deleted, unreadable ones included
  // Records that could not be decoded: unreadable tasks are left in place (they are data),
  // unreadable idempotency entries are deleted (they would fail every find_idempotent()).
  std::size_t unreadable = 0;
};

class task_store {
 public:
  // Opens (creating if needed) the store in options.dir. On failure the status names the
  // directory and RocksDB's reason.
  static status open(const store_options& options, std::unique_ptr<task_store>& out);
  ~task_store();
  task_store(const task_store&) = delete;
  task_store& operator=(const task_store&) = delete;

  status apply(const write_batch& batch);
  // apply() only if it can be done without waiting: `applied` is false, and nothing written,
  // while another write holds the store, when RocksDB would hold the write back (a stall while
  // flushes catch up), or with durability::fsync (the sync is a wait for the disk). For a
  // caller on a thread that must not block, with a writer thread to fall back on.
  status try_apply(const write_batch& batch, bool& applied);
  // durability::fsync: every write waits for the disk, so try_apply() never applies one.
  bool syncs_writes() const;
  // Everything needed to resume: live tasks, the id counter, project settings and counts.
  // Pending tasks come whole while out.live holds fewer than `resident` tasks, and as summaries
  // in out.queued after that, so a large backlog is never all in memory at once. A large live
  // set is decoded by two threads (the upper half may hold `resident` whole tasks of its own
  // until the halves are joined).
  status recover(recovered_state& out, std::size_t resident = static_cast<std::size_t>(-1));
  status get(task_id id, task& out);  // live or finished; not_found if neither
  // Unfinished tasks `ids` in one batched lookup, into `out` in the order of `ids`: cheaper per
  // task than get() when several are read back at once. not_found names the first id that is
  // not an unfinished task in the store; `out` is then unspecified.
  status get_unfinished(const std::vector<task_id>& ids, std::vector<task>& out);
  // One page of the tasks matching the filter: at most filter.limit, newest (highest id) first
  // or oldest first, only ids after filter.after (exclusive) in that order. `next` is the
  // cursor for the following page: the last id returned when the page is full (more may
  // follow; the next page may be empty), 0 when there is no more.
  // Live tasks are scanned (they are bounded by what is in flight). Finished tasks are found
  // through the most selective usable index (project, type, worker, final status, finished or
  // created range; when several apply, judged by the kept counts and by counting index entries
  // up to a small cap) or, when none narrows them much, by walking "done" in id order; either
  // way the walk stops once the page is full. Every other filter, text included, is applied to
  // the candidate records (text search is such a post-filter: it narrows what is returned, not
  // what is read). Reads one snapshot, so a page is consistent with itself. `stats` (optional)
  // receives what was read.
  status list(const task_filter& filter, std::vector<task>& out, task_id& next,
              query_stats* stats = nullptr);
  // The id of the task that used `key` in `project`, if the entry exists and was created at or
  // after `not_before` (older entries have expired even if purge() has not deleted them yet);
  // otherwise `out` is nullopt. Either way the status is ok; errors are reading failures,
  // a corrupt entry, or a project containing '\0'. A point lookup, with a bloom filter.
  status find_idempotent(const std::string& project, const std::string& key, millis not_before,
                         std::optional<task_id>& out);
  // Retention, part one: finds finished tasks with finished_at < finished_before and
  // idempotency entries with created_at < keys_before. Finished tasks are found through the
  // finish time index, oldest first, so a call reads the expired ones plus the entries of the
  // ~65 s bucket holding finished_before, however many newer tasks the store keeps; a finished
  // task without a finish time (the dispatcher always sets one) is not indexed by it and
  // stays. Examines at most max_items entries (> 0; invalid_argument otherwise), walking both
  // sets in key order from `cursor`, which it advances (only on success), never stopping at a
  // newer entry: every candidate is examined once per round whatever precedes it, and one that
  // ages after the cursor passed it is found in the next round. Read-only, so safe on any
  // thread, and best kept off the writer's: it may sort the index memtable (make_index_options
  // in task_store.cpp), tens of ms on a busy store.
  status find_expired(millis finished_before, millis keys_before, std::size_t max_items,
                      purge_cursor& cursor, expired_entries& out) const;
  // Retention, part two, a write (under the write lock, as apply()): deletes those of
  // `found` that are still expired by the same cutoffs (a task may have been retried or removed
  // since it was found), taking the tasks off the counts, in one atomic write. A task purged
  // here no longer exists: a later put_task for it must give no `previous`. On a failed write
  // nothing is deleted.
  status purge(const expired_entries& found, millis finished_before, millis keys_before,
               purge_result& out);
  // Counts as of the last successful apply() or purge().
  std::map<std::string, status_counts> counts() const;
  // store_options::cpus as opened.
  const std::vector<int>& cpus() const;

 private:
  struct impl;
  explicit task_store(std::unique_ptr<impl> p);
  // apply() under the write lock; see impl::write for `waiting_refused`.
  status stage_and_write(const write_batch& batch, bool* waiting_refused);
  std::unique_ptr<impl> impl_;
};

}  // namespace dispatch::persistence
