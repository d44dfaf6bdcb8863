// Durable home of every task, project setting and the id counter, on RocksDB.
//
// Contract:
//  * apply() writes a batch atomically: after it returns ok, every change in it survives a crash
//    of the process (RocksDB WAL), and with durability::fsync also a power loss. If it returns an
//    error, none of the batch is visible.
//  * Unfinished tasks (pending, running) live apart from finished ones, so that open() and
//    recovery read only the live set however many finished tasks the store holds.
//  * The store keeps a count of tasks per project and status, updated in the same batch as the
//    tasks, so counts never drift from the stored tasks and need no scan at start.
//  * One writer at a time (the persistence actor); reads may come from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "persistence/status.hpp"
#include "protocol/task.hpp"

namespace dispatch::persistence {

enum class durability : std::uint8_t {
  wal,    // survives a crash of the process
  fsync,  // survives power loss: the WAL is synced before apply() returns
};

struct store_options {
  std::string dir = "./data";
  durability mode = durability::wal;
};

using status_counts = std::array<std::uint64_t, task_status_count>;  // index = task_status

// Changes to apply together.
class write_batch {
 public:
  // Inserts or updates a task. `previous` is the status the store holds for it (nullopt for a
  // new task); the per-project counts move from it to t.status.
  void put_task(const task& t, std::optional<task_status> previous);
  void put_project(const std::string& name, const project_settings& settings);
  // Highest id handed out so far; recovery continues after it.
  void set_last_id(task_id id);

  bool empty() const { return tasks_.empty() && projects_.empty() && !last_id_; }
  std::size_t size() const { return tasks_.size() + projects_.size() + (last_id_ ? 1 : 0); }
  void clear();
  // Moves every change of `other` behind this batch's own (group commit).
  void append(write_batch&& other) {
    for (auto& c : other.tasks_) tasks_.push_back(std::move(c));
    for (auto& p : other.projects_) projects_.push_back(std::move(p));
    if (other.last_id_ && (!last_id_ || *other.last_id_ > *last_id_)) last_id_ = other.last_id_;
    other.clear();
  }

 private:
  friend class task_store;
  struct task_change {
    task t;
    std::optional<task_status> previous;
  };
  std::vector<task_change> tasks_;
  std::vector<std::pair<std::string, project_settings>> projects_;
  std::optional<task_id> last_id_;
};

struct recovered_state {
  std::vector<task> live;  // pending and running, in id order
  task_id last_id = 0;
  std::map<std::string, project_settings> projects;
  std::map<std::string, status_counts> counts;
};

struct task_filter {
  std::optional<std::string> project;
  std::optional<task_status> status;
  std::size_t limit = 100;
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
  // Everything needed to resume: live tasks, the id counter, project settings and counts.
  status recover(recovered_state& out);
  status get(task_id id, task& out);  // live or finished; not_found if neither
  // Tasks matching the filter, newest (highest id) first.
  status list(const task_filter& filter, std::vector<task>& out);
  // Counts as of the last successful apply().
  std::map<std::string, status_counts> counts() const;

 private:
  struct impl;
  explicit task_store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace dispatch::persistence
