#include "bench/floor/store_floor.hpp"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <vector>

#include "bench/support/workload.hpp"
#include "persistence/task_store.hpp"
#include "protocol/codec.hpp"

namespace dispatch::bench {

namespace {

// Both APIs run the same phases; each implements the three writes.
class writer {
 public:
  virtual ~writer() = default;
  virtual void submitted(const std::vector<task>& tasks, task_id last_id) = 0;
  virtual void assigned(const std::vector<task>& tasks) = 0;
  virtual void completed(const std::vector<task>& tasks) = 0;
};

void check(const rocksdb::Status& s, const char* what) {
  if (!s.ok()) throw std::runtime_error(std::string(what) + ": " + s.ToString());
}

std::string big_endian(std::uint64_t v, std::size_t bytes) {
  std::string out(bytes, '\0');
  for (std::size_t i = 0; i < bytes; ++i) out[bytes - 1 - i] = static_cast<char>(v >> (8 * i));
  return out;
}

// Plain RocksDB with the store's column families and key shapes (8-byte big-endian ids,
// msgpack records from the protocol codec); options left at RocksDB's defaults.
class rocksdb_writer final : public writer {
 public:
  rocksdb_writer(const std::string& dir, bool fsync) {
    rocksdb::DBOptions options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const char* name : {"default", "live", "done", "meta", "index"})
      cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> raw;
    rocksdb::DB* db = nullptr;
    check(rocksdb::DB::Open(options, dir, cfs, &raw, &db), "cannot open RocksDB");
    db_.reset(db);
    for (auto* h : raw) handles_.emplace_back(h, handle_deleter{db});
    write_options_.sync = fsync;
  }
  ~rocksdb_writer() override {
    handles_.clear();  // handles go before the database
  }

  void submitted(const std::vector<task>& tasks, task_id last_id) override {
    rocksdb::WriteBatch wb;
    for (const auto& t : tasks) put_record(wb, cf_live, t);
    check(wb.Put(cf(cf_meta), "last_id", big_endian(last_id, 8)), "stage");
    put_counts(wb);
    write(wb);
  }
  void assigned(const std::vector<task>& tasks) override {
    rocksdb::WriteBatch wb;
    for (const auto& t : tasks) put_record(wb, cf_live, t);
    put_counts(wb);
    write(wb);
  }
  void completed(const std::vector<task>& tasks) override {
    rocksdb::WriteBatch wb;
    for (const auto& t : tasks) {
      put_record(wb, cf_done, t);
      const std::string id = big_endian(t.id, 8);
      check(wb.Delete(cf(cf_live), id), "stage");
      put_index(wb, t, id);
    }
    put_counts(wb);
    write(wb);
  }

 private:
  enum cf_index { cf_default, cf_live, cf_done, cf_meta, cf_index_keys };
  struct handle_deleter {
    rocksdb::DB* db;
    void operator()(rocksdb::ColumnFamilyHandle* h) const {
      db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    }
  };

  rocksdb::ColumnFamilyHandle* cf(cf_index i) const { return handles_[i].get(); }

  void put_record(rocksdb::WriteBatch& wb, cf_index where, const task& t) {
    protocol::encode_task(t, value_);
    check(wb.Put(cf(where), big_endian(t.id, 8), value_), "stage");
  }
  // One entry per indexed name, the status, and two bucket sizes of the finish time: the shape
  // of the store's index (tag, length-prefixed value or bucket, id), written from its description.
  void put_index(rocksdb::WriteBatch& wb, const task& t, const std::string& id) {
    const auto named = [&](char tag, const std::string& name) {
      check(wb.Put(cf(cf_index_keys), std::string(1, tag) + big_endian(name.size(), 4) + name + id,
                   ""),
            "stage");
    };
    named('P', t.project);
    named('T', t.type);
    named('W', t.worker);
    check(wb.Put(cf(cf_index_keys), std::string{'S', static_cast<char>(t.status)} + id, ""),
          "stage");
    const auto at = static_cast<std::uint64_t>(t.finished_at);
    for (unsigned level = 0; level < 2; ++level)
      check(wb.Put(cf(cf_index_keys),
                   std::string{'F', static_cast<char>(level)} +
                       big_endian(at >> (16 + 8 * level), 8) + id,
                   level == 0 ? big_endian(at, 8) : ""),
            "stage");
  }
  void put_counts(rocksdb::WriteBatch& wb) {
    check(wb.Put(cf(cf_meta), "counts/bench", std::string(8 * 7, '\1')), "stage");
  }
  void write(rocksdb::WriteBatch& wb) { check(db_->Write(write_options_, &wb), "write"); }

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<std::unique_ptr<rocksdb::ColumnFamilyHandle, handle_deleter>> handles_;
  rocksdb::WriteOptions write_options_;
  std::string value_;
};

// The project's store, called as the persistence actor calls it.
class task_store_writer final : public writer {
 public:
  task_store_writer(const std::string& dir, bool fsync) {
    const auto s = persistence::task_store::open(
        {dir, fsync ? persistence::durability::fsync : persistence::durability::wal, {}}, store_);
    if (!s.is_ok()) throw std::runtime_error("cannot open the store: " + s.message());
  }
  void submitted(const std::vector<task>& tasks, task_id last_id) override {
    persistence::write_batch b;
    for (const auto& t : tasks) b.put_task(t, std::nullopt);
    b.set_last_id(last_id);
    apply(b);
  }
  void assigned(const std::vector<task>& tasks) override {
    persistence::write_batch b;
    for (const auto& t : tasks) b.put_task(t, task_status::pending);
    apply(b);
  }
  void completed(const std::vector<task>& tasks) override {
    persistence::write_batch b;
    for (const auto& t : tasks) b.put_task(t, task_status::running);
    apply(b);
  }

 private:
  void apply(const persistence::write_batch& b) {
    const auto s = store_->apply(b);
    if (!s.is_ok()) throw std::runtime_error("store write failed: " + s.message());
  }
  std::unique_ptr<persistence::task_store> store_;
};

task make_task(task_id id, std::size_t payload, int priority) {
  task t;
  t.id = id;
  t.project = bench_project;
  t.type = bench_type;
  t.priority = priority;
  t.payload = stamped_payload(payload, now_ns());
  t.created_at = 1'700'000'000'000 + static_cast<millis>(id);
  return t;
}

}  // namespace

double run_store_floor(const store_floor_load& load) {
  std::unique_ptr<writer> w;
  if (load.api == store_api::rocksdb)
    w = std::make_unique<rocksdb_writer>(load.dir, load.fsync);
  else
    w = std::make_unique<task_store_writer>(load.dir, load.fsync);

  priority_source priorities;
  std::vector<task> batch, group;
  const auto start = bench_clock::now();
  for (std::size_t first = 0; first < load.tasks; first += load.batch) {
    const std::size_t n = std::min(load.batch, load.tasks - first);
    batch.clear();
    for (std::size_t i = 0; i < n; ++i)
      batch.push_back(make_task(first + i + 1, load.payload, priorities.next()));
    w->submitted(batch, first + n);
    // The same tasks move on in groups: first assigned, then completed.
    for (std::size_t g = 0; g < n; g += load.group) {
      const std::size_t m = std::min(load.group, n - g);
      group.assign(batch.begin() + static_cast<std::ptrdiff_t>(g),
                   batch.begin() + static_cast<std::ptrdiff_t>(g + m));
      for (auto& t : group) {
        t.status = task_status::running;
        t.attempts = 1;
        t.worker = "bench-worker-0";
        t.assigned_at = t.created_at + 1;
        t.lease_expires_at = t.assigned_at + 300'000;
      }
      w->assigned(group);
      for (auto& t : group) {
        t.status = task_status::completed;
        t.finished_at = t.assigned_at + 1;
        t.lease_expires_at = 0;
      }
      w->completed(group);
    }
  }
  return std::chrono::duration<double>(bench_clock::now() - start).count();
}

}  // namespace dispatch::bench
