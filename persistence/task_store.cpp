#include "persistence/task_store.hpp"

#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/table_properties_collectors.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string_view>
#include <system_error>
#include <utility>

#include "protocol/codec.hpp"

namespace dispatch::persistence {

// ---------------------------------------------------------------------------------------------
// write_batch: only collects changes; all encoding happens in task_store::apply().

void write_batch::put_task(const task& t, std::optional<task_status> previous) {
  tasks_.push_back(task_change{t, previous});
}

void write_batch::put_project(const std::string& name, const project_settings& settings) {
  projects_.emplace_back(name, settings);
}

void write_batch::remove_task(const task& t) {
  // Only what the removal needs: copying payload and result would cost for nothing.
  task_change c;
  c.t.id = t.id;
  c.t.project = t.project;
  c.t.status = t.status;
  c.remove = true;
  tasks_.push_back(std::move(c));
}

void write_batch::put_idempotency(const std::string& project, const std::string& key, task_id id,
                                  millis created_at) {
  keys_.push_back(key_change{project, key, id, created_at});
}

void write_batch::set_last_id(task_id id) { last_id_ = id; }

void write_batch::clear() {
  tasks_.clear();
  projects_.clear();
  keys_.clear();
  last_id_.reset();
}

namespace {

// Column families, in the order they are passed to DB::Open (RocksDB requires "default").
// "idempotency" came later: stores created before it get it on their next open
// (create_missing_column_families).
enum cf_index : std::size_t {
  cf_default,
  cf_live,
  cf_done,
  cf_meta,
  cf_projects,
  cf_idempotency,
  cf_count
};
constexpr std::array<const char*, cf_count> cf_names = {"default", "live",     "done",
                                                       "meta",    "projects", "idempotency"};

constexpr std::string_view last_id_key = "last_id";
constexpr std::string_view counts_prefix = "counts/";

// Stored formats. These are on disk: change them only with a migration.
// One little-endian uint64 per status. Records written before a status was added are shorter and
// read with zero for the missing statuses.
constexpr std::size_t counts_size = 8 * task_status_count;
constexpr unsigned char settings_version = 1;
constexpr std::size_t settings_size = 1 + 1 + 4 + 4;  // version, paused, max_inflight, weight
// Idempotency entry: key project + '\0' + key (projects hold no '\0', so the first one splits);
// value task id then created_at, each a little-endian 64-bit integer (created_at two's
// complement).
constexpr std::size_t idempotency_value_size = 8 + 8;

// Big-endian, so that RocksDB's bytewise key order is the numeric id order.
std::string task_key(task_id id) {
  std::string key(8, '\0');
  for (int i = 7; i >= 0; --i) {
    key[static_cast<std::size_t>(i)] = static_cast<char>(id & 0xffu);
    id >>= 8;
  }
  return key;
}

std::uint64_t read_be64(const rocksdb::Slice& s) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

void append_le(std::string& out, std::uint64_t v, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; ++i) {
    out.push_back(static_cast<char>(v & 0xffu));
    v >>= 8;
  }
}

std::uint64_t read_le(const char* p, std::size_t bytes) {
  std::uint64_t v = 0;
  for (std::size_t i = bytes; i > 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i - 1]);
  return v;
}

std::string encode_counts(const status_counts& c) {
  std::string out;
  out.reserve(counts_size);
  for (std::uint64_t n : c) append_le(out, n, 8);
  return out;
}

bool decode_counts(const rocksdb::Slice& s, status_counts& out) {
  if (s.size() > counts_size || s.size() % 8 != 0 || s.size() == 0) return false;
  out.fill(0);
  for (std::size_t i = 0; i < s.size() / 8; ++i) out[i] = read_le(s.data() + 8 * i, 8);
  return true;
}

std::string encode_settings(const project_settings& p) {
  std::string out;
  out.reserve(settings_size);
  out.push_back(static_cast<char>(settings_version));
  out.push_back(p.paused ? '\1' : '\0');
  append_le(out, p.max_inflight, 4);
  append_le(out, p.weight, 4);
  return out;
}

std::string idempotency_key(const std::string& project, const std::string& key) {
  std::string out;
  out.reserve(project.size() + 1 + key.size());
  out.append(project);
  out.push_back('\0');
  out.append(key);
  return out;
}

std::string encode_idempotency(task_id id, millis created_at) {
  std::string out;
  out.reserve(idempotency_value_size);
  append_le(out, id, 8);
  append_le(out, static_cast<std::uint64_t>(created_at), 8);
  return out;
}

bool decode_idempotency(const rocksdb::Slice& s, task_id& id, millis& created_at) {
  if (s.size() != idempotency_value_size) return false;
  id = read_le(s.data(), 8);
  created_at = static_cast<millis>(read_le(s.data() + 8, 8));
  return true;
}

bool decode_settings(const rocksdb::Slice& s, project_settings& out) {
  if (s.size() != settings_size || static_cast<unsigned char>(s[0]) != settings_version) return false;
  const auto paused = static_cast<unsigned char>(s[1]);
  if (paused > 1) return false;
  out.paused = paused == 1;
  out.max_inflight = static_cast<std::uint32_t>(read_le(s.data() + 2, 4));
  out.weight = static_cast<std::uint32_t>(read_le(s.data() + 6, 4));
  return true;
}

// Keys in error messages: ids in decimal, anything else printable or as hex.
std::string describe_key(const rocksdb::Slice& key) {
  const bool printable = std::all_of(key.data(), key.data() + key.size(),
                                     [](char c) { return c >= 0x20 && c < 0x7f; });
  if (printable) return "'" + key.ToString() + "'";
  return "0x" + key.ToString(/*hex=*/true);
}

std::string describe_task_key(const char* cf, const rocksdb::Slice& key) {
  if (key.size() == 8) return std::string(cf) + " task " + std::to_string(read_be64(key));
  return std::string(cf) + " key " + describe_key(key);
}

bool valid_status(task_status s) { return static_cast<std::size_t>(s) < task_status_count; }

// Takes one task off a count. Clamped: a caller's wrong status must not wrap a count to 2^64-1.
void take_one(status_counts& c, task_status s) {
  auto& n = c[static_cast<std::size_t>(s)];
  if (n > 0) --n;
}

bool valid_project(const std::string& project) {
  return project.find('\0') == std::string::npos;
}

// Maps RocksDB's outcome onto ours, keeping its own text after our context.
status from_rocksdb(const rocksdb::Status& s, const std::string& context) {
  std::string msg = context + ": " + s.ToString();
  if (s.IsCorruption()) return status::corruption(std::move(msg));
  if (s.IsInvalidArgument()) return status::invalid_argument(std::move(msg));
  if (s.IsNotFound()) return status::not_found(std::move(msg));
  return status::io_error(std::move(msg));
}

// Compression for finished tasks: LZ4 when this RocksDB build has it (fast, good on payloads and
// results), else Snappy, else none. Probed at run time because Debian's build options may vary.
rocksdb::CompressionType done_compression() {
  const auto supported = rocksdb::GetSupportedCompressions();
  for (auto wanted : {rocksdb::kLZ4Compression, rocksdb::kSnappyCompression})
    if (std::find(supported.begin(), supported.end(), wanted) != supported.end()) return wanted;
  return rocksdb::kNoCompression;
}

// Options are kept close to RocksDB's defaults on purpose; each change below answers a specific
// property of a queue's workload.
rocksdb::DBOptions make_db_options() {
  rocksdb::DBOptions o;
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  // "projects" (and at times "done") are written rarely. A WAL file can only be deleted once
  // every column family with data in it has flushed, so without a bound a small, idle memtable
  // keeps gigabytes of WAL alive. Past this size RocksDB flushes the column families holding
  // the oldest WAL file.
  o.max_total_wal_size = 128u << 20;
  // RocksDB starts a new info LOG on every open; a handful is enough to diagnose a problem.
  o.keep_log_file_num = 5;
  return o;
}

std::shared_ptr<rocksdb::TableFactory> task_table_factory() {
  rocksdb::BlockBasedTableOptions t;
  // get() probes "live" first, and most lookups are for finished tasks: a bloom filter turns
  // that miss into a memory check instead of a block read.
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  return std::shared_ptr<rocksdb::TableFactory>(rocksdb::NewBlockBasedTableFactory(t));
}

rocksdb::ColumnFamilyOptions make_live_options(const std::shared_ptr<rocksdb::TableFactory>& tf) {
  rocksdb::ColumnFamilyOptions o;
  o.table_factory = tf;
  // Live tasks are small, short-lived and rewritten on every state change; most die in the
  // memtable (the default 64 MiB write buffer absorbs that churn). Compressing what reaches
  // disk would cost CPU for little space.
  o.compression = rocksdb::kNoCompression;
  // Every live task is eventually deleted, so live SST files fill with tombstones that slow
  // down recover()'s scan. Files with many deletions get compacted early.
  o.table_properties_collector_factories.emplace_back(
      rocksdb::NewCompactOnDeletionCollectorFactory(/*sliding_window_size=*/1024,
                                                    /*deletion_trigger=*/512,
                                                    /*deletion_ratio=*/0.5));
  return o;
}

rocksdb::ColumnFamilyOptions make_done_options(const std::shared_ptr<rocksdb::TableFactory>& tf) {
  rocksdb::ColumnFamilyOptions o;
  o.table_factory = tf;
  // Finished tasks are written once and read rarely: the one place compression pays.
  o.compression = done_compression();
  // purge() deletes the oldest ids, i.e. long runs at the front of the key space, and each new
  // pass starts there: compacting files made mostly of those tombstones early keeps that first
  // seek from stepping over all of them.
  o.table_properties_collector_factories.emplace_back(
      rocksdb::NewCompactOnDeletionCollectorFactory(/*sliding_window_size=*/1024,
                                                    /*deletion_trigger=*/512,
                                                    /*deletion_ratio=*/0.5));
  return o;
}

rocksdb::ColumnFamilyOptions make_idempotency_options(
    const std::shared_ptr<rocksdb::TableFactory>& tf) {
  rocksdb::ColumnFamilyOptions o;
  // The shared table factory brings the bloom filter: nearly every submit looks up a key that
  // was never used, and the filter answers that miss without reading a block.
  o.table_factory = tf;
  // Values are 16 bytes of ids and times and keys are mostly random tokens whose shared
  // project prefix the block format already elides: compression would find little to save.
  o.compression = rocksdb::kNoCompression;
  return o;
}

// DB::Open hands out raw handles that must go back through DestroyColumnFamilyHandle().
struct cf_deleter {
  rocksdb::DB* db = nullptr;
  void operator()(rocksdb::ColumnFamilyHandle* h) const {
    if (db != nullptr && h != nullptr) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
};
using cf_ptr = std::unique_ptr<rocksdb::ColumnFamilyHandle, cf_deleter>;
using iterator_ptr = std::unique_ptr<rocksdb::Iterator>;

// purge() works in rounds: one pass over "done" and one over "idempotency", each spread over as
// many calls as the budget needs. A side whose pass is done waits for the other, so that the
// round ends (and the caller hears "no more") once both are, instead of the two passes
// restarting out of step forever.
struct purge_pass {
  std::string next;   // first key not examined yet; empty: the start
  bool done = false;  // reached the end in this round
};

}  // namespace

// ---------------------------------------------------------------------------------------------

struct task_store::impl {
  std::string dir;
  rocksdb::WriteOptions write_options;
  // Declared before the handles, so destroyed after them: RocksDB requires every column family
  // handle to be released before the DB is deleted.
  std::unique_ptr<rocksdb::DB> db;
  std::array<cf_ptr, cf_count> cfs;

  // Written only by the single writer (apply, purge), read by counts() from any thread. The
  // writer itself reads them without the mutex: nobody else writes them.
  mutable std::mutex counts_mutex;
  std::map<std::string, status_counts> counts;

  // How far purge()'s current round has got in "done" and in "idempotency". Writer-only.
  purge_pass purge_tasks;
  purge_pass purge_keys;

  ~impl() {
    for (auto& h : cfs) h.reset();
    // Close() reports errors the destructor cannot act on; everything acknowledged is already
    // in the WAL, so nothing is lost by ignoring it.
    if (db) db->Close().PermitUncheckedError();
  }

  rocksdb::ColumnFamilyHandle* cf(cf_index i) const { return cfs[i].get(); }

  std::string context(const std::string& what) const { return what + " in store " + dir; }

  // RocksDB rejected a write (no space, file too large, read-only after a background error):
  // always io_error, with RocksDB's reason, so the caller can tell it from a bad batch.
  status refused(const rocksdb::Status& s) const {
    return status::io_error("store " + dir + " refused the write: " + s.ToString());
  }

  // The counts of `project` as a write being staged will leave them: starts from the published
  // counts the first time the write touches the project. Writer-only (see counts_mutex).
  status_counts& staged_counts(std::map<std::string, status_counts>& staged,
                               const std::string& project) const {
    auto it = staged.find(project);
    if (it != staged.end()) return it->second;
    const auto found = counts.find(project);
    return staged.emplace(project, found != counts.end() ? found->second : status_counts{})
        .first->second;
  }

  // Stages the staged counts with the write and publishes them once it succeeded, so that
  // counts() never shows a change the store does not hold.
  status write(rocksdb::WriteBatch& wb, std::map<std::string, status_counts>& staged) {
    for (const auto& [project, c] : staged) {
      const rocksdb::Status s =
          wb.Put(cf(cf_meta), std::string(counts_prefix) + project, encode_counts(c));
      if (!s.ok()) return from_rocksdb(s, context("cannot stage counts of '" + project + "'"));
    }
    const rocksdb::Status s = db->Write(write_options, &wb);
    if (!s.ok()) return refused(s);
    std::lock_guard<std::mutex> lock(counts_mutex);
    for (auto& [project, c] : staged) counts[project] = std::move(c);
    return status::ok();
  }

  status load_counts(std::map<std::string, status_counts>& out) const {
    out.clear();
    iterator_ptr it(db->NewIterator(rocksdb::ReadOptions(), cf(cf_meta)));
    const rocksdb::Slice prefix(counts_prefix.data(), counts_prefix.size());
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      status_counts c{};
      if (!decode_counts(it->value(), c))
        return status::corruption(context("bad counts record meta " + describe_key(it->key())));
      rocksdb::Slice project = it->key();
      project.remove_prefix(prefix.size());
      out[project.ToString()] = c;
    }
    if (!it->status().ok()) return from_rocksdb(it->status(), context("cannot read counts"));
    return status::ok();
  }

  // Decodes the record under `it`, checking that the key is an id and agrees with the record.
  static bool decode_at(const rocksdb::Iterator& it, task& out) {
    return it.key().size() == 8 &&
           protocol::decode_task(std::string_view(it.value().data(), it.value().size()), out) &&
           out.id == read_be64(it.key());
  }
};

task_store::task_store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
task_store::~task_store() = default;

status task_store::open(const store_options& options, std::unique_ptr<task_store>& out) {
  out.reset();
  const std::string& dir = options.dir;
  if (dir.empty()) return status::invalid_argument("cannot open store: no directory given");
  const std::string where = "cannot open store in " + dir;

  // Checked here rather than left to RocksDB so that the message says what is wrong with the
  // path itself, not which of RocksDB's files it failed to create.
  std::error_code ec;
  const auto st = std::filesystem::status(dir, ec);
  if (std::filesystem::exists(st) && !std::filesystem::is_directory(st))
    return status::io_error(where + ": the path exists and is not a directory");
  std::filesystem::create_directories(dir, ec);
  if (ec) return status::io_error(where + ": cannot create the directory: " + ec.message());

  const auto tf = task_table_factory();
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (std::size_t i = 0; i < cf_count; ++i) {
    rocksdb::ColumnFamilyOptions o;
    // "meta" and "projects" hold a few small records: compressing them buys nothing.
    o.compression = rocksdb::kNoCompression;
    if (i == cf_live) o = make_live_options(tf);
    if (i == cf_done) o = make_done_options(tf);
    if (i == cf_idempotency) o = make_idempotency_options(tf);
    descriptors.emplace_back(cf_names[i], o);
  }

  std::vector<rocksdb::ColumnFamilyHandle*> raw_handles;
  rocksdb::DB* raw_db = nullptr;
  const rocksdb::Status s =
      rocksdb::DB::Open(make_db_options(), dir, descriptors, &raw_handles, &raw_db);
  // Take ownership before anything else can return; on failure RocksDB has already released
  // everything and left both empty.
  auto p = std::make_unique<impl>();
  p->dir = dir;
  p->db.reset(raw_db);
  for (std::size_t i = 0; i < raw_handles.size() && i < cf_count; ++i)
    p->cfs[i] = cf_ptr(raw_handles[i], cf_deleter{raw_db});
  if (!s.ok()) return from_rocksdb(s, where);
  if (raw_handles.size() != cf_count)
    return status::io_error(where + ": RocksDB returned an unexpected number of column families");

  p->write_options.sync = options.mode == durability::fsync;
  p->write_options.disableWAL = false;  // both modes rely on the WAL

  // Counts are kept in memory so that apply() can update them without a read.
  if (status cs = p->load_counts(p->counts); !cs.is_ok()) return cs;

  // The constructor is private (the header's contract), so make_unique cannot reach it; the
  // object is owned by a unique_ptr the moment it exists.
  out = std::unique_ptr<task_store>(new task_store(std::move(p)));
  return status::ok();
}

status task_store::apply(const write_batch& batch) {
  if (batch.empty()) return status::ok();
  impl& d = *impl_;
  rocksdb::WriteBatch wb;
  rocksdb::Status s;
  // New counts of every project the batch touches; published only after the write succeeded.
  std::map<std::string, status_counts> staged;

  std::string value;
  for (const auto& change : batch.tasks_) {
    const task& t = change.t;
    if (!valid_status(t.status) || (change.previous && !valid_status(*change.previous)))
      return status::invalid_argument("task " + std::to_string(t.id) + " has an unknown status");
    const std::string key = task_key(t.id);
    const bool final = is_final(t.status);
    auto& c = d.staged_counts(staged, t.project);

    if (change.remove) {
      s = wb.Delete(d.cf(final ? cf_done : cf_live), key);
      if (!s.ok())
        return from_rocksdb(s, d.context("cannot stage removal of task " + std::to_string(t.id)));
      take_one(c, t.status);
      continue;
    }

    protocol::encode_task(t, value);
    s = wb.Put(d.cf(final ? cf_done : cf_live), key, value);
    // Crossing between live and final moves the record, in this same atomic batch.
    if (s.ok() && change.previous && is_final(*change.previous) != final)
      s = wb.Delete(d.cf(final ? cf_live : cf_done), key);
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage task " + std::to_string(t.id)));
    if (change.previous) take_one(c, *change.previous);
    ++c[static_cast<std::size_t>(t.status)];
  }

  for (const auto& [name, settings] : batch.projects_) {
    s = wb.Put(d.cf(cf_projects), name, encode_settings(settings));
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage project '" + name + "'"));
  }
  for (const auto& k : batch.keys_) {
    if (!valid_project(k.project) || k.key.empty())
      return status::invalid_argument(
          "idempotency entry for task " + std::to_string(k.id) +
          (k.key.empty() ? " has an empty key" : " names a project containing '\\0'"));
    s = wb.Put(d.cf(cf_idempotency), idempotency_key(k.project, k.key),
               encode_idempotency(k.id, k.created_at));
    if (!s.ok())
      return from_rocksdb(
          s, d.context("cannot stage idempotency entry of task " + std::to_string(k.id)));
  }
  if (batch.last_id_) {
    s = wb.Put(d.cf(cf_meta), rocksdb::Slice(last_id_key.data(), last_id_key.size()),
               task_key(*batch.last_id_));
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage last id"));
  }
  return d.write(wb, staged);
}

status task_store::recover(recovered_state& out) {
  out = recovered_state{};
  const impl& d = *impl_;
  rocksdb::ReadOptions ro;
  // A one-off full scan: keep it from evicting the blocks that get()/list() keep hot.
  ro.fill_cache = false;

  {
    iterator_ptr it(d.db->NewIterator(ro, d.cf(cf_live)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      task t;
      if (!impl::decode_at(*it, t))
        return status::corruption(
            d.context("cannot decode " + describe_task_key("live", it->key())));
      out.live.push_back(std::move(t));
    }
    if (!it->status().ok()) return from_rocksdb(it->status(), d.context("cannot read live tasks"));
  }

  {
    std::string value;
    const rocksdb::Status s = d.db->Get(
        ro, d.cf(cf_meta), rocksdb::Slice(last_id_key.data(), last_id_key.size()), &value);
    if (s.ok()) {
      if (value.size() != 8)
        return status::corruption(d.context("bad last id record meta 'last_id'"));
      out.last_id = read_be64(value);
    } else if (!s.IsNotFound()) {
      return from_rocksdb(s, d.context("cannot read last id"));
    }
  }

  {
    iterator_ptr it(d.db->NewIterator(ro, d.cf(cf_projects)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      project_settings p;
      if (!decode_settings(it->value(), p))
        return status::corruption(
            d.context("bad project record projects " + describe_key(it->key())));
      out.projects[it->key().ToString()] = p;
    }
    if (!it->status().ok()) return from_rocksdb(it->status(), d.context("cannot read projects"));
  }

  return d.load_counts(out.counts);
}

status task_store::get(task_id id, task& out) {
  const impl& d = *impl_;
  const std::string key = task_key(id);
  std::string value;
  for (cf_index i : {cf_live, cf_done}) {
    const rocksdb::Status s = d.db->Get(rocksdb::ReadOptions(), d.cf(i), key, &value);
    if (s.IsNotFound()) continue;
    if (!s.ok()) return from_rocksdb(s, d.context("cannot read task " + std::to_string(id)));
    task t;
    if (!protocol::decode_task(value, t) || t.id != id)
      return status::corruption(d.context("cannot decode " + describe_task_key(cf_names[i], key)));
    out = std::move(t);
    return status::ok();
  }
  return status::not_found(d.context("no task " + std::to_string(id)));
}

status task_store::list(const task_filter& filter, std::vector<task>& out) {
  out.clear();
  if (filter.limit == 0) return status::ok();
  const impl& d = *impl_;
  // A status filter decides which side can hold matches at all.
  const bool want_live = !filter.status || !is_final(*filter.status);
  const bool want_done = !filter.status || is_final(*filter.status);

  // Walk both sides backwards from the highest id and merge, so the result is newest first
  // without reading more than the matches up to `limit` (plus the non-matching tasks between).
  struct side {
    const char* name;
    iterator_ptr it;
  };
  std::vector<side> sides;
  for (cf_index i : {cf_live, cf_done}) {
    if ((i == cf_live && !want_live) || (i == cf_done && !want_done)) continue;
    sides.push_back(side{cf_names[i], iterator_ptr(d.db->NewIterator(rocksdb::ReadOptions(), d.cf(i)))});
    sides.back().it->SeekToLast();
  }

  while (out.size() < filter.limit) {
    side* next = nullptr;
    for (auto& sd : sides)
      if (sd.it->Valid() && (next == nullptr || sd.it->key().compare(next->it->key()) > 0))
        next = &sd;
    if (next == nullptr) break;
    task t;
    if (!impl::decode_at(*next->it, t))
      return status::corruption(
          d.context("cannot decode " + describe_task_key(next->name, next->it->key())));
    next->it->Prev();
    if (filter.project && t.project != *filter.project) continue;
    if (filter.status && t.status != *filter.status) continue;
    out.push_back(std::move(t));
  }
  for (const auto& sd : sides)
    if (!sd.it->status().ok()) return from_rocksdb(sd.it->status(), d.context("cannot list tasks"));
  return status::ok();
}

status task_store::find_idempotent(const std::string& project, const std::string& key,
                                   millis not_before, std::optional<task_id>& out) {
  out.reset();
  if (!valid_project(project))
    return status::invalid_argument(
        "cannot look up an idempotency key: the project contains '\\0'");
  const impl& d = *impl_;
  const std::string stored_key = idempotency_key(project, key);
  rocksdb::PinnableSlice value;
  const rocksdb::Status s =
      d.db->Get(rocksdb::ReadOptions(), d.cf(cf_idempotency), stored_key, &value);
  if (s.IsNotFound()) return status::ok();
  if (!s.ok())
    return from_rocksdb(s, d.context("cannot read idempotency key " + describe_key(key) +
                                     " of project '" + project + "'"));
  task_id id = 0;
  millis created_at = 0;
  if (!decode_idempotency(value, id, created_at))
    return status::corruption(
        d.context("bad idempotency record idempotency " + describe_key(stored_key)));
  if (created_at >= not_before) out = id;
  return status::ok();
}

namespace {

// One bounded walk over a column family, resuming at a cursor.
struct scan_outcome {
  std::size_t examined = 0;
  bool at_end = false;  // the walk reached the end of the column family: the pass is complete
  std::string next;     // where the following walk resumes (empty: from the start)
};

// Visits at most `budget` entries of `cf` from `cursor` (the first key not yet examined, empty
// for the start) in key order. `visit(key, value)` stages whatever it decides into a batch; it
// must not write.
template <class Visit>
rocksdb::Status scan(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* cf, const std::string& cursor,
                     std::size_t budget, Visit&& visit, scan_outcome& out) {
  out = scan_outcome{};
  rocksdb::ReadOptions ro;
  // A background walk over old data: keep it from evicting the blocks get() and list() use.
  ro.fill_cache = false;
  iterator_ptr it(db.NewIterator(ro, cf));
  if (cursor.empty())
    it->SeekToFirst();
  else
    it->Seek(cursor);  // a cursor deleted since lands on the next key, as it should
  for (; it->Valid() && out.examined < budget; it->Next()) {
    visit(it->key(), it->value());
    ++out.examined;
  }
  if (!it->status().ok()) return it->status();
  out.at_end = !it->Valid();
  if (!out.at_end) out.next = it->key().ToString();
  return rocksdb::Status::OK();
}

}  // namespace

status task_store::purge(millis finished_before, millis keys_before, std::size_t max_items,
                         purge_result& out) {
  out = purge_result{};
  if (max_items == 0) return status::invalid_argument("purge needs max_items > 0");
  impl& d = *impl_;
  rocksdb::WriteBatch wb;
  std::map<std::string, status_counts> staged;
  std::size_t task_deletes = 0, key_deletes = 0, unreadable = 0;
  rocksdb::Status staging;  // the first failure to stage a delete, if any

  const auto visit_task = [&](const rocksdb::Slice& key, const rocksdb::Slice& value) {
    task t;
    if (key.size() != 8 ||
        !protocol::decode_task(std::string_view(value.data(), value.size()), t) ||
        t.id != read_be64(key) || !valid_status(t.status)) {
      ++unreadable;  // left in place: it is data, and recover() or get() will report it
      return;
    }
    // A finished task should carry finished_at; without it, its age is its submission's rather
    // than "older than anything", which would delete it at once whatever the retention.
    const millis finished = t.finished_at != 0 ? t.finished_at : t.created_at;
    if (finished >= finished_before) return;
    const rocksdb::Status s = wb.Delete(d.cf(cf_done), key);
    if (!s.ok()) {
      if (staging.ok()) staging = s;
      return;
    }
    take_one(d.staged_counts(staged, t.project), t.status);
    ++task_deletes;
  };
  const auto visit_key = [&](const rocksdb::Slice& key, const rocksdb::Slice& value) {
    task_id id = 0;
    millis created_at = 0;
    const bool readable = decode_idempotency(value, id, created_at);
    if (!readable) ++unreadable;
    // An unreadable entry would fail find_idempotent() for its key forever; dropping it only
    // forgets a deduplication hint.
    if (readable && created_at >= keys_before) return;
    const rocksdb::Status s = wb.Delete(d.cf(cf_idempotency), key);
    if (!s.ok()) {
      if (staging.ok()) staging = s;
      return;
    }
    ++key_deletes;
  };

  // Changes to the passes are made on copies, kept only once the deletes are written: after a
  // failed write the next call examines the same entries again.
  purge_pass tasks = d.purge_tasks, keys = d.purge_keys;
  std::size_t budget = max_items, examined = 0;
  const auto walk = [&](purge_pass& pass, cf_index i, std::size_t limit, auto& visit) {
    if (pass.done || limit == 0) return rocksdb::Status::OK();
    scan_outcome o;
    const rocksdb::Status st = scan(*d.db, d.cf(i), pass.next, limit, visit, o);
    if (!st.ok()) return st;
    budget -= o.examined;
    examined += o.examined;
    pass.done = o.at_end;
    pass.next = std::move(o.next);
    return rocksdb::Status::OK();
  };
  // Half of the budget each while both passes run, the part one side leaves unused going to the
  // other, so that a long pass over one does not hold up the other.
  rocksdb::Status s = walk(tasks, cf_done, keys.done ? budget : budget - budget / 2, visit_task);
  if (s.ok()) s = walk(keys, cf_idempotency, budget, visit_key);
  if (s.ok()) s = walk(tasks, cf_done, budget, visit_task);
  if (!s.ok()) return from_rocksdb(s, d.context("cannot read for purge"));
  if (!staging.ok()) return from_rocksdb(staging, d.context("cannot stage purge"));

  if (wb.Count() > 0) {
    if (status w = d.write(wb, staged); !w.is_ok()) return w;
  }
  out.tasks_removed = task_deletes;
  out.keys_removed = key_deletes;
  out.examined = examined;
  out.unreadable = unreadable;
  out.more = !(tasks.done && keys.done);
  if (!out.more) tasks = keys = purge_pass{};  // round complete: the next call starts over
  d.purge_tasks = std::move(tasks);
  d.purge_keys = std::move(keys);
  return status::ok();
}

std::map<std::string, status_counts> task_store::counts() const {
  std::lock_guard<std::mutex> lock(impl_->counts_mutex);
  return impl_->counts;
}

}  // namespace dispatch::persistence
