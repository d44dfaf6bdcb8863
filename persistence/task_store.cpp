#include "persistence/task_store.hpp"

#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/snapshot.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/table_properties_collectors.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <limits>
#include <mutex>
#include <set>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#include "persistence/cpu_pinning.hpp"
#include "persistence/idle_priority.hpp"
#include "protocol/codec.hpp"

namespace dispatch::persistence {

// ---------------------------------------------------------------------------------------------
// write_batch: only collects changes; all encoding happens in task_store::apply().

void write_batch::put_task(task t, std::optional<task_status> previous,
                           millis previous_finished_at) {
  tasks_.push_back(task_change{std::move(t), previous, false, previous_finished_at});
}

void write_batch::put_project(const std::string& name, const project_settings& settings) {
  projects_.emplace_back(name, settings);
}

void write_batch::remove_task(const task& t) {
  // Only what the removal needs (the key, the count and the index entries): copying payload
  // and result would cost for nothing.
  task_change c;
  c.t.id = t.id;
  c.t.project = t.project;
  c.t.type = t.type;
  c.t.worker = t.worker;
  c.t.status = t.status;
  c.t.created_at = t.created_at;
  c.t.finished_at = t.finished_at;
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
// "idempotency" and "index" came later: stores created before them get them on their next open
// (create_missing_column_families); open() then fills "index" from "done".
enum cf_index : std::size_t {
  cf_default,
  cf_live,
  cf_done,
  cf_meta,
  cf_projects,
  cf_idempotency,
  cf_index_keys,  // secondary keys of finished tasks
  cf_count
};
constexpr std::array<const char*, cf_count> cf_names = {
    "default", "live", "done", "meta", "projects", "idempotency", "index"};

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

void append_be(std::string& out, std::uint64_t v, std::size_t bytes) {
  for (std::size_t i = bytes; i > 0; --i)
    out.push_back(static_cast<char>((v >> (8 * (i - 1))) & 0xffu));
}

// Big-endian, so that RocksDB's bytewise key order is the numeric id order.
std::string task_key(task_id id) {
  std::string key;
  key.reserve(8);
  append_be(key, id, 8);
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

// ---- The index of finished tasks ("index" column family) ----
//
// Every key ends in the task id, big-endian, after a prefix naming one indexed value, so the
// tasks with that value are one contiguous run in id order: a query seeks to its cursor and walks
// forwards (oldest first) or backwards (newest first), and stops when its page is full.
//   'P' len name id   project        'T' len name id   type        'W' len name id   worker
//   'S' status id     final status   (len: 4 bytes big-endian, so no name can end another's
//                                     prefix, whatever bytes names hold; no worker: no 'W')
//   'F' level bucket id -> finished_at
// A finish time cannot be a prefix (a range holds many values), and walking a time-ordered key
// would give the tasks in time order, not id order. So time is cut into buckets, each an
// id-ordered run, at several sizes (time_shifts): a range is covered by few buckets, large ones
// inside it and small ones at its edges, and a query merges them by id. Each task has one entry
// per size; the smallest-size entry carries the exact time as its value, since only
// smallest-size buckets are ever partly outside a range. A time of 0 ("never") is not indexed.
// Values are empty otherwise. Creation time needs no entry: it does not decrease with the id
// (the store's contract), so a created range is an id range, found by bisecting the records.
// Stored format: change it only with a new index_version (open() rebuilds the index when the
// stored version differs).
constexpr std::string_view index_version_key = "index_version";
// "2": two bucket sizes instead of three (see time_shifts). "3": no creation time entries.
constexpr std::string_view index_version = "3";

constexpr char tag_project = 'P';
constexpr char tag_type = 'T';
constexpr char tag_worker = 'W';
constexpr char tag_status = 'S';
constexpr char tag_finished = 'F';

// Bucket sizes, as powers of two of ms: ~65 s and ~4.7 h. A factor of 256 between sizes: two
// entries per task (every entry costs each finishing task a memtable insert; a third
// size of ~50 days cost a tenth of the store's write time and served only ranges longer than
// the default retention of a week), and a range is covered by at most ~255 small buckets on
// each side plus one large bucket per 4.7 h inside it (a week: ~36; open ends stop at the
// newest and oldest entries). A seek each per round, cheap next to the records a round
// fetches. The smallest size bounds what a narrow query reads beyond its range: the entries of
// the two ~65 s buckets at its edges.
constexpr std::array<unsigned, 2> time_shifts = {16, 24};

// The prefixes append to `out`, so that staging a task's entries reuses one key buffer.
void append_name_prefix(std::string& out, char tag, const std::string& name) {
  out.push_back(tag);
  append_be(out, name.size(), 4);
  out.append(name);
}

std::string name_prefix(char tag, const std::string& name) {
  std::string p;
  p.reserve(1 + 4 + name.size() + 8);
  append_name_prefix(p, tag, name);
  return p;
}

std::string status_prefix(task_status st) {
  return std::string{tag_status, static_cast<char>(st)};
}

// Times as unsigned keys in the same order (the sign bit flipped), so a negative time, however
// unlikely, sorts before the epoch rather than after everything.
std::uint64_t time_order(millis t) { return static_cast<std::uint64_t>(t) ^ (1ULL << 63); }

void append_time_prefix(std::string& out, std::size_t level, std::uint64_t bucket) {
  out.push_back(tag_finished);
  out.push_back(static_cast<char>(level));
  append_be(out, bucket, 8);
}

std::string time_prefix(std::size_t level, std::uint64_t bucket) {
  std::string p;
  p.reserve(1 + 1 + 8 + 8);
  append_time_prefix(p, level, bucket);
  return p;
}

// Calls visit(key, value) for every index entry of finished task `t`. The key is one buffer,
// rebuilt for each entry: this runs for every task that finishes, on the writer's thread.
template <class Visit>
void for_each_index_entry(const task& t, Visit&& visit) {
  std::string key;
  key.reserve(1 + 4 + std::max({t.project.size(), t.type.size(), t.worker.size()}) + 8);
  const auto visit_with_id = [&](const rocksdb::Slice& value) {
    append_be(key, t.id, 8);
    visit(key, value);
    key.clear();
  };
  append_name_prefix(key, tag_project, t.project);
  visit_with_id({});
  append_name_prefix(key, tag_type, t.type);
  visit_with_id({});
  if (!t.worker.empty()) {
    append_name_prefix(key, tag_worker, t.worker);
    visit_with_id({});
  }
  key.push_back(tag_status);
  key.push_back(static_cast<char>(t.status));
  visit_with_id({});
  if (t.finished_at == 0) return;
  const std::uint64_t at = time_order(t.finished_at);
  std::string exact;
  append_be(exact, at, 8);
  for (std::size_t level = 0; level < time_shifts.size(); ++level) {
    append_time_prefix(key, level, at >> time_shifts[level]);
    visit_with_id(level == 0 ? rocksdb::Slice(exact) : rocksdb::Slice());
  }
}

// Stages the index entries of finished task `t`: puts them (`add`) or deletes them.
rocksdb::Status stage_index(rocksdb::WriteBatch& wb, rocksdb::ColumnFamilyHandle* cf,
                            const task& t, bool add) {
  rocksdb::Status s;
  for_each_index_entry(t, [&](const std::string& key, const rocksdb::Slice& value) {
    if (s.ok()) s = add ? wb.Put(cf, key, value) : wb.Delete(cf, key);
  });
  return s;
}

// The fields of `t` the index is built from, without payload and result.
task indexed_fields(const task& t) {
  task out;
  out.id = t.id;
  out.project = t.project;
  out.type = t.type;
  out.worker = t.worker;
  out.status = t.status;
  out.created_at = t.created_at;
  out.finished_at = t.finished_at;
  return out;
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

// Set up on RocksDB's flush and compaction threads at each job they start (they belong to
// RocksDB: this is its only hook on them; start_background_threads below covers what a job
// does before it reaches this). RocksDB counts, per thread, every key comparison and more into
// a thread-local perf context unless told not to; the counting is a thread-local access in
// every comparison, and nobody reads the counts. With --storage-cpus the threads are
// also kept on those CPUs (cpu_pinning.hpp), at the lowest priority; a job is a flush or
// compaction of megabytes, so the system calls each are nothing.
class background_thread_setup : public rocksdb::EventListener {
 public:
  explicit background_thread_setup(std::vector<int> cpus) : cpus_(std::move(cpus)) {}
  void OnFlushBegin(rocksdb::DB*, const rocksdb::FlushJobInfo&) override { set_up(); }
  void OnCompactionBegin(rocksdb::DB*, const rocksdb::CompactionJobInfo&) override { set_up(); }

 private:
  void set_up() const {
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
    if (cpus_.empty()) return;
    // Validated when the option was parsed; a failure here only costs the pinning.
    [[maybe_unused]] const auto s = pin_this_thread(cpus_);
    // Pinned, a flush (an index memtable sort takes ~0.2 s) shares its CPUs with the writer, and
    // every acknowledgement and dispatch waits for the writer's group commit. At idle priority
    // the flush gives way the moment the writer wakes (idle_priority.hpp says why a nice level
    // does not) and still gets what the writer leaves. (Unpinned, a lowered priority made
    // latency worse: bench/README.md.)
    enter_idle_priority();
  }
  const std::vector<int> cpus_;
};

// With --storage-cpus, starts RocksDB's flush and compaction threads on those CPUs at idle
// priority from their first instruction: a pool starts its threads on the thread that asks for
// them, and a new thread inherits its creator's CPUs and policy. background_thread_setup alone
// comes too late for a thread's first job. Before a flush calls its listeners it syncs the WAL
// files it closed; the kernel's writeback of those ran on any CPU at normal priority and held
// the request path's CPU for ~30 ms in slices of up to 2.4 ms at the first flush of every start.
void start_background_threads(const rocksdb::DBOptions& o, const std::vector<int>& cpus) {
  if (cpus.empty()) return;
  run_at_idle_priority([&] {
    if (!pin_this_thread(cpus).is_ok()) return;  // then background_thread_setup pins them
    // As many as DB::Open asks for with max_background_flushes and _compactions left at -1.
    const int flushes = std::max(1, o.max_background_jobs / 4);
    o.env->IncBackgroundThreadsIfNeeded(flushes, rocksdb::Env::Priority::HIGH);
    o.env->IncBackgroundThreadsIfNeeded(std::max(1, o.max_background_jobs - flushes),
                                        rocksdb::Env::Priority::LOW);
  });
}

// Options are kept close to RocksDB's defaults on purpose; each change below answers a specific
// property of a queue's workload.
rocksdb::DBOptions make_db_options(const std::vector<int>& background_cpus) {
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
  // Required by the index's vector memtable (make_index_options). Concurrent memtable writes
  // only help several writer threads; the store has one.
  o.allow_concurrent_memtable_write = false;
  o.listeners.push_back(std::make_shared<background_thread_setup>(background_cpus));
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
  // Ids only grow, and a submit's tasks follow each other in its write batch: with a hint (one
  // for all keys: the empty prefix) each lands next to the one before instead of searching the
  // skip list from the top.
  o.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(0));
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

// How much of the index the memtable holds before it is written out (see make_index_options).
constexpr std::size_t index_write_buffer = 8u << 20;

rocksdb::ColumnFamilyOptions make_index_options() {
  rocksdb::ColumnFamilyOptions o;
  // Every finished task adds six entries, which are written on the completion path but read
  // only by operators' queries. A vector memtable appends them (no skip list search, no key
  // comparisons) and sorts them once, when it is written out. Measured: the store's write time
  // for the whole task lifecycle fell by about a fifth and end-to-end throughput rose by a
  // quarter (bench/README.md). The price is paid by readers: an iterator over this column family
  // sorts a copy of the memtable, so a query over finished tasks costs tens of ms while the
  // memtable is full. A small write buffer bounds that cost; queries run on their own thread
  // (actors/store_reader_actor.hpp) so that they never hold up writes. A vector memtable needs
  // allow_concurrent_memtable_write off (make_db_options); the store has one writer anyway.
  o.memtable_factory = std::make_shared<rocksdb::VectorRepFactory>();
  o.write_buffer_size = index_write_buffer;
  // The default table format, without the other families' bloom filter: queries only seek
  // here, which a filter cannot help, and building one would hash every entry again at each
  // flush and compaction.
  // Keys are long runs of shared prefixes and ids: they compress well, and the index is about
  // as large as the finished tasks it covers.
  o.compression = done_compression();
  // purge() deletes the entries of the oldest finished tasks, which cluster at the front of
  // every time bucket run: compact such files early, as for "done".
  o.table_properties_collector_factories.emplace_back(
      rocksdb::NewCompactOnDeletionCollectorFactory(/*sliding_window_size=*/1024,
                                                    /*deletion_trigger=*/512,
                                                    /*deletion_ratio=*/0.5));
  return o;
}

// Decodes a task record, checking that it is the record of task `id`.
bool decode_record(const rocksdb::Slice& value, task_id id, task& out) {
  return protocol::decode_task(std::string_view(value.data(), value.size()), out) && out.id == id;
}

// Decodes the task record under `it`, checking that the key is an id and agrees with the record.
bool decode_at(const rocksdb::Iterator& it, task& out) {
  return it.key().size() == 8 && decode_record(it.value(), read_be64(it.key()), out);
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

}  // namespace

// ---------------------------------------------------------------------------------------------

namespace {

// Keeps recovered task `t` whole in out.live, or as a summary in out.queued once out.live holds
// `resident` tasks and `t` is pending (see task_store::recover).
void keep_recovered(task&& t, std::size_t resident, recovered_state& out) {
  if (t.status != task_status::pending || out.live.size() < resident) {
    out.live.push_back(std::move(t));
    return;
  }
  out.queued.push_back({t.id, std::move(t.project), std::move(t.type), t.priority,
                        std::move(t.tags), t.deadline, t.overdue});
}

}  // namespace

struct task_store::impl {
  std::string dir;
  std::vector<int> cpus;
  rocksdb::WriteOptions write_options;
  // Declared before the handles, so destroyed after them: RocksDB requires every column family
  // handle to be released before the DB is deleted.
  std::unique_ptr<rocksdb::DB> db;
  std::array<cf_ptr, cf_count> cfs;

  // Held by every write (apply, try_apply, purge) from staging to publishing its counts: one
  // writer at a time, whichever thread it is on.
  std::mutex write_mutex;
  // Written only under write_mutex, read by counts() from any thread. A writer reads them
  // without this mutex: nobody else writes them.
  mutable std::mutex counts_mutex;
  std::map<std::string, status_counts> counts;

  ~impl() {
    // Memtables written out now spare the next open a replay of the WAL, which would insert
    // everything again and then write it out anyway: a clean stop is followed by a fast start.
    // Errors here, as from Close(), cannot be acted on and lose nothing: everything
    // acknowledged is already in the WAL.
    if (db) {
      std::vector<rocksdb::ColumnFamilyHandle*> all;
      for (auto& h : cfs)
        if (h) all.push_back(h.get());
      db->Flush(rocksdb::FlushOptions(), all).PermitUncheckedError();
    }
    for (auto& h : cfs) h.reset();
    if (db) db->Close().PermitUncheckedError();
  }

  rocksdb::ColumnFamilyHandle* cf(cf_index i) const { return cfs[i].get(); }

  std::string context(const std::string& what) const { return what + " in store " + dir; }
  // Decodes the record of task `id` read from column family `cf`: corruption unless it decodes
  // as that task.
  status check_record(const char* cf, const std::string& key, rocksdb::Slice value, task_id id,
                      task& out) const {
    if (decode_record(value, id, out)) return status::ok();
    return status::corruption(context("cannot decode " + describe_task_key(cf, key)));
  }

  // The values of `keys` in column family `i`, in one batched lookup (cheaper per key than a
  // Get() each): values[k] and statuses[k] answer keys[k].
  struct batch_read {
    std::vector<rocksdb::PinnableSlice> values;
    std::vector<rocksdb::Status> statuses;
  };
  batch_read read_batch(cf_index i, const rocksdb::ReadOptions& ro,
                        const std::vector<std::string>& keys) const {
    const std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
    batch_read r{std::vector<rocksdb::PinnableSlice>(keys.size()),
                 std::vector<rocksdb::Status>(keys.size())};
    db->MultiGet(ro, cf(i), slices.size(), slices.data(), r.values.data(), r.statuses.data());
    return r;
  }

  // Recovers the live tasks with keys in [from, to) (empty: from the first, to the end), in id
  // order.
  status read_live(const std::string& from, const std::string& to, std::size_t resident,
                   recovered_state& out) const {
    rocksdb::ReadOptions ro;
    // A one-off full scan: keep it from evicting the blocks that get()/list() keep hot.
    ro.fill_cache = false;
    const rocksdb::Slice upper(to);
    if (!to.empty()) ro.iterate_upper_bound = &upper;
    iterator_ptr it(db->NewIterator(ro, cf(cf_live)));
    for (from.empty() ? it->SeekToFirst() : it->Seek(from); it->Valid(); it->Next()) {
      task t;
      if (!decode_at(*it, t))
        return status::corruption(
            context("cannot decode " + describe_task_key("live", it->key())));
      keep_recovered(std::move(t), resident, out);
    }
    if (!it->status().ok()) return from_rocksdb(it->status(), context("cannot read live tasks"));
    return status::ok();
  }

  // Decoding the live set is most of a start's work: a large one is read by two threads, each
  // over half of the id range, and the halves are joined as one scan would have filled `out`.
  status recover_live(std::size_t resident, recovered_state& out) const {
    task_id first = 0;
    task_id last = 0;
    {
      iterator_ptr it(db->NewIterator(rocksdb::ReadOptions(), cf(cf_live)));
      it->SeekToFirst();
      if (it->Valid() && it->key().size() == 8) first = read_be64(it->key());
      it->SeekToLast();
      if (it->Valid() && it->key().size() == 8) last = read_be64(it->key());
      if (!it->status().ok()) return from_rocksdb(it->status(), context("cannot read live tasks"));
    }
    constexpr task_id worth_a_thread = 8192;  // ids spanned; fewer are read by one thread
    if (last < first || last - first < worth_a_thread) return read_live({}, {}, resident, out);

    const std::string middle = task_key(first + (last - first) / 2 + 1);
    recovered_state upper;
    status upper_read;
    std::thread reader([&] { upper_read = read_live(middle, {}, resident, upper); });
    const status lower_read = read_live({}, middle, resident, out);
    reader.join();
    if (!lower_read.is_ok()) return lower_read;
    if (!upper_read.is_ok()) return upper_read;
    // The upper half kept up to `resident` whole by itself; what the bound leaves no room for
    // now becomes a summary. Those pending tasks all come before the upper half's own summaries
    // (it summarized only once its bound was reached), so appending keeps id order.
    for (auto& t : upper.live) keep_recovered(std::move(t), resident, out);
    out.queued.insert(out.queued.end(), std::make_move_iterator(upper.queued.begin()),
                      std::make_move_iterator(upper.queued.end()));
    return status::ok();
  }

  // RocksDB rejected a write (no space, file too large, read-only after a background error):
  // always io_error, with RocksDB's reason, so the caller can tell it from a bad batch.
  status refused(const rocksdb::Status& s) const {
    return status::io_error("store " + dir + " refused the write: " + s.ToString());
  }

  // The counts of `project` as a write being staged will leave them: starts from the published
  // counts the first time the write touches the project. Under write_mutex (see counts_mutex).
  status_counts& staged_counts(std::map<std::string, status_counts>& staged,
                               const std::string& project) const {
    auto it = staged.find(project);
    if (it != staged.end()) return it->second;
    const auto found = counts.find(project);
    return staged.emplace(project, found != counts.end() ? found->second : status_counts{})
        .first->second;
  }

  // Stages the staged counts with the write and publishes them once it succeeded, so that
  // counts() never shows a change the store does not hold. With `waiting_refused`, a write
  // RocksDB would have to hold back (a stall or slowdown while flushes catch up) is not made:
  // ok, and *waiting_refused set.
  status write(rocksdb::WriteBatch& wb, std::map<std::string, status_counts>& staged,
               bool* waiting_refused = nullptr) {
    for (const auto& [project, c] : staged) {
      const rocksdb::Status s =
          wb.Put(cf(cf_meta), std::string(counts_prefix) + project, encode_counts(c));
      if (!s.ok()) return from_rocksdb(s, context("cannot stage counts of '" + project + "'"));
    }
    // The writer's thread (see background_thread_setup): a thread-local store, cheap to repeat.
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
    rocksdb::WriteOptions options = write_options;
    options.no_slowdown = waiting_refused != nullptr;
    const rocksdb::Status s = db->Write(options, &wb);
    if (waiting_refused && s.IsIncomplete()) {
      *waiting_refused = true;
      return status::ok();
    }
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

  // Builds the index from "done" unless the stored index_version says it is there: a store of
  // a release before the index, or one whose build was cut short (the version is written
  // last, so a crash mid-way means "build again"). Quiet and one-off: a full pass over the
  // finished tasks, written in chunks so memory stays bounded.
  status ensure_index() {
    const rocksdb::Slice version_key(index_version_key.data(), index_version_key.size());
    std::string stored;
    const rocksdb::Status got = db->Get(rocksdb::ReadOptions(), cf(cf_meta), version_key, &stored);
    if (got.ok() && stored == index_version) return status::ok();
    if (!got.ok() && !got.IsNotFound())
      return from_rocksdb(got, context("cannot read index version"));

    rocksdb::ReadOptions ro;
    ro.fill_cache = false;  // one pass over old data
    rocksdb::WriteBatch wb;
    // Whatever a cut-short build or another index version left goes first. Every index key
    // starts with an ASCII tag, so this range holds them all.
    {
      iterator_ptr any(db->NewIterator(ro, cf(cf_index_keys)));
      any->SeekToFirst();
      if (any->Valid()) {
        const rocksdb::Status s = wb.DeleteRange(cf(cf_index_keys), "", "\xff");
        if (!s.ok()) return from_rocksdb(s, context("cannot stage index reset"));
      }
      if (!any->status().ok()) return from_rocksdb(any->status(), context("cannot read index"));
    }
    constexpr std::size_t chunk = 4096;  // finished tasks per write
    std::size_t staged = 0;
    iterator_ptr it(db->NewIterator(ro, cf(cf_done)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      task t;
      // An unreadable record is left out: get() and list() report it when they meet it.
      if (!decode_at(*it, t) || !valid_status(t.status)) continue;
      const rocksdb::Status s = stage_index(wb, cf(cf_index_keys), indexed_fields(t), true);
      if (!s.ok()) return from_rocksdb(s, context("cannot stage index entries"));
      if (++staged % chunk == 0) {
        const rocksdb::Status w = db->Write(write_options, &wb);
        if (!w.ok()) return refused(w);
        wb.Clear();
      }
    }
    if (!it->status().ok())
      return from_rocksdb(it->status(), context("cannot read finished tasks"));
    const rocksdb::Status s = wb.Put(
        cf(cf_meta), version_key, rocksdb::Slice(index_version.data(), index_version.size()));
    if (!s.ok()) return from_rocksdb(s, context("cannot stage index version"));
    const rocksdb::Status w = db->Write(write_options, &wb);
    if (!w.ok()) return refused(w);
    return status::ok();
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
    if (i == cf_index_keys) o = make_index_options();
    descriptors.emplace_back(cf_names[i], o);
  }

  std::vector<rocksdb::ColumnFamilyHandle*> raw_handles;
  rocksdb::DB* raw_db = nullptr;
  const auto db_options = make_db_options(options.cpus);
  start_background_threads(db_options, options.cpus);
  const rocksdb::Status s = rocksdb::DB::Open(db_options, dir, descriptors, &raw_handles, &raw_db);
  // Take ownership before anything else can return; on failure RocksDB has already released
  // everything and left both empty.
  auto p = std::make_unique<impl>();
  p->dir = dir;
  p->cpus = options.cpus;
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
  if (status is = p->ensure_index(); !is.is_ok()) return is;

  // The constructor is private (the header's contract), so make_unique cannot reach it; the
  // object is owned by a unique_ptr the moment it exists.
  out = std::unique_ptr<task_store>(new task_store(std::move(p)));
  return status::ok();
}

namespace {

// One task's change as apply() stages it: the last state of a chain of puts within the batch,
// from the status the store held before the first of them.
struct staged_change {
  const task* t;
  std::optional<task_status> previous;
  bool remove;
  millis previous_finished_at;
};

// Collapses each chain of puts of one task (pending, then running, then completed: a task
// assigned and finished before its group commit) into one change from the first put's
// `previous` to the last put's state. The batch is atomic, so the store never shows the states
// in between, and writing them would cost a record (and its memtable entry) each. Only puts
// from an unfinished state chain: leaving "done" deletes index entries computed from the
// change's own task, which must be the task that entered it.
// (A template only because write_batch's change type is private to it and task_store.)
template <class Changes>
std::vector<staged_change> collapse_chains(const Changes& changes) {
  std::vector<staged_change> out;
  out.reserve(changes.size());
  std::unordered_map<task_id, std::size_t> latest;  // task -> its last change in `out`
  latest.reserve(changes.size());
  for (const auto& c : changes) {
    // An unknown status is never folded away: apply() must see it to reject the batch.
    const bool chains_on =
        !c.remove && c.previous && valid_status(*c.previous) && !is_final(*c.previous);
    if (chains_on) {
      const auto it = latest.find(c.t.id);
      if (it != latest.end()) {
        auto& earlier = out[it->second];
        if (!earlier.remove && earlier.t->status == *c.previous &&
            (!earlier.previous || !is_final(*earlier.previous))) {
          earlier.t = &c.t;
          continue;
        }
      }
    }
    latest[c.t.id] = out.size();
    out.push_back({&c.t, c.previous, c.remove, c.previous_finished_at});
  }
  return out;
}

}  // namespace

status task_store::apply(const write_batch& batch) {
  std::lock_guard<std::mutex> lock(impl_->write_mutex);
  return stage_and_write(batch, nullptr);
}

bool task_store::syncs_writes() const { return impl_->write_options.sync; }

status task_store::try_apply(const write_batch& batch, bool& applied) {
  applied = false;
  if (syncs_writes()) return status::ok();
  std::unique_lock<std::mutex> lock(impl_->write_mutex, std::try_to_lock);
  if (!lock) return status::ok();
  bool refused = false;
  status s = stage_and_write(batch, &refused);
  applied = s.is_ok() && !refused;
  return s;
}

status task_store::stage_and_write(const write_batch& batch, bool* waiting_refused) {
  if (batch.empty()) return status::ok();
  impl& d = *impl_;
  const auto changes = collapse_chains(batch.tasks_);
  // Room for every record and index entry up front: a group commit of a few hundred tasks is
  // megabytes, and growing the batch by doubling would copy it about as many times again.
  std::size_t estimate = 0;
  for (const auto& c : changes)
    estimate += 128 + (c.remove ? 0 : c.t->payload.size() + c.t->result.size()) +
                (is_final(c.t->status) ? 320 : 0);
  rocksdb::WriteBatch wb(estimate);
  rocksdb::Status s;
  // New counts of every project the batch touches; published only after the write succeeded.
  std::map<std::string, status_counts> staged;

  std::string value;
  for (const auto& change : changes) {
    const task& t = *change.t;
    if (!valid_status(t.status) || (change.previous && !valid_status(*change.previous)))
      return status::invalid_argument("task " + std::to_string(t.id) + " has an unknown status");
    const std::string key = task_key(t.id);
    const bool final = is_final(t.status);
    auto& c = d.staged_counts(staged, t.project);

    if (change.remove) {
      s = wb.Delete(d.cf(final ? cf_done : cf_live), key);
      if (s.ok() && final) s = stage_index(wb, d.cf(cf_index_keys), t, /*add=*/false);
      if (!s.ok())
        return from_rocksdb(s, d.context("cannot stage removal of task " + std::to_string(t.id)));
      take_one(c, t.status);
      continue;
    }

    protocol::encode_task(t, value);
    s = wb.Put(d.cf(final ? cf_done : cf_live), key, value);
    // Crossing between live and final moves the record, in this same atomic batch.
    const bool was_final = change.previous && is_final(*change.previous);
    if (s.ok() && change.previous && was_final != final)
      s = wb.Delete(d.cf(final ? cf_live : cf_done), key);
    // The index follows the record, from what the caller states: no read. Entering "done"
    // (or rewriting a finished record) puts its entries; leaving it deletes the entries the
    // record had, which differ from `t` only in status and, after a retry, finished_at.
    if (s.ok() && final) {
      if (was_final && *change.previous != t.status)
        s = wb.Delete(d.cf(cf_index_keys), status_prefix(*change.previous) + key);
      if (s.ok()) s = stage_index(wb, d.cf(cf_index_keys), t, /*add=*/true);
    } else if (s.ok() && was_final) {
      task old = indexed_fields(t);
      old.status = *change.previous;
      if (change.previous_finished_at != 0) old.finished_at = change.previous_finished_at;
      s = stage_index(wb, d.cf(cf_index_keys), old, /*add=*/false);
    }
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
  return d.write(wb, staged, waiting_refused);
}

status task_store::recover(recovered_state& out, std::size_t resident) {
  out = recovered_state{};
  const impl& d = *impl_;
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  if (status s = d.recover_live(resident, out); !s.is_ok()) return s;

  // The highest id of each side has its latest created_at (the contract's order). An
  // unreadable finished record is left to get() and list() to report, as everywhere else: here
  // it costs only the order's guarantee against a clock set back.
  for (cf_index i : {cf_live, cf_done}) {
    iterator_ptr it(d.db->NewIterator(ro, d.cf(i)));
    it->SeekToLast();
    if (!it->status().ok())
      return from_rocksdb(it->status(), d.context(std::string("cannot read ") + cf_names[i]));
    task t;
    if (it->Valid() && decode_at(*it, t))
      out.last_created_at = std::max(out.last_created_at, t.created_at);
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
    if (status ds = d.check_record(cf_names[i], key, value, id, t); !ds.is_ok()) return ds;
    out = std::move(t);
    return status::ok();
  }
  return status::not_found(d.context("no task " + std::to_string(id)));
}

status task_store::get_unfinished(const std::vector<task_id>& ids, std::vector<task>& out) {
  const impl& d = *impl_;
  out.clear();
  std::vector<std::string> keys;
  keys.reserve(ids.size());
  for (const auto id : ids) keys.push_back(task_key(id));
  const auto read = d.read_batch(cf_live, rocksdb::ReadOptions(), keys);
  out.resize(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const rocksdb::Status& st = read.statuses[i];
    if (st.IsNotFound())
      return status::not_found(d.context("no unfinished task " + std::to_string(ids[i])));
    if (!st.ok()) return from_rocksdb(st, d.context("cannot read task " + std::to_string(ids[i])));
    if (status ds = d.check_record(cf_names[cf_live], keys[i], read.values[i], ids[i], out[i]);
        !ds.is_ok())
      return ds;
  }
  return status::ok();
}

namespace {

// ---- list(): a stream of matching live tasks and one of matching finished tasks, both in the
// query's id order, merged. ----

// Knobs of the finished-task search. A probe counts an index's entries (up to the cap) to judge
// how selective it is: cheap next to fetching records, and bounded however large the store.
constexpr std::size_t probe_cap = 16384;
// Ids a time index merge collects per round; it starts near the page size and doubles while the
// other filters keep rejecting candidates.
constexpr std::size_t min_round = 16;
constexpr std::size_t max_round = 4096;

// What every stream reads through, and where it reports.
struct query_context {
  rocksdb::DB* db = nullptr;
  rocksdb::ColumnFamilyHandle* live = nullptr;
  rocksdb::ColumnFamilyHandle* done = nullptr;
  rocksdb::ColumnFamilyHandle* index = nullptr;
  rocksdb::ReadOptions ro;  // carries the query's snapshot
  bool oldest = false;      // id order of the query: ascending (oldest first) or descending
  task_id after = 0;        // the query's cursor, moved to the window's start if before it
  // The ids a match can have, inclusive: narrowed by a created range (see created_window).
  task_id lowest = 0;
  task_id highest = std::numeric_limits<task_id>::max();
  query_stats* stats = nullptr;
  std::string dir;
  status error;  // the first failure; every stream ends at it

  std::string context(const std::string& what) const { return what + " in store " + dir; }
  void fail(status s) {
    if (error.is_ok()) error = std::move(s);
  }
  // `a` comes before `b` in the query's order.
  bool before(task_id a, task_id b) const { return oldest ? a < b : a > b; }
  // `id` is past the window's end in the query's order: nothing from it on can match.
  bool beyond(task_id id) const { return oldest ? id > highest : id < lowest; }
};

char fold(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool in_time_range(millis t, millis from, millis to) {
  if (from == 0 && to == 0) return true;
  return t != 0 && (from == 0 || t >= from) && (to == 0 || t < to);
}

// Every filter except the cursor, which the streams apply by where they start.
class task_matcher {
 public:
  explicit task_matcher(const task_filter& f) : f_(f), text_(f.text) {
    std::transform(text_.begin(), text_.end(), text_.begin(), fold);
  }

  bool operator()(const task& t) const {
    const task_filter& f = f_;
    return (!f.project || t.project == *f.project) && (!f.status || t.status == *f.status) &&
           (!f.type || t.type == *f.type) && (!f.worker || t.worker == *f.worker) &&
           (!f.priority_min || t.priority >= *f.priority_min) &&
           (!f.priority_max || t.priority <= *f.priority_max) &&
           in_time_range(t.created_at, f.created_from, f.created_to) &&
           in_time_range(t.finished_at, f.finished_from, f.finished_to) &&
           (text_.empty() || has_text(t.type) || has_text(t.title) || has_text(t.description));
  }

 private:
  // ASCII case folding only: enough for names and ids, and never splits a UTF-8 sequence.
  bool has_text(const std::string& field) const {
    return std::search(field.begin(), field.end(), text_.begin(), text_.end(),
                       [](char a, char b) { return fold(a) == b; }) != field.end();
  }
  const task_filter& f_;
  std::string text_;  // folded
};

// Puts `it` on the first key of the run `prefix` + id that follows `after` in the query's order
// (after 0: the run's first in that order); past the run if there is none.
void seek_run(rocksdb::Iterator& it, const std::string& prefix, bool oldest, task_id after) {
  if (oldest) {
    const std::string from = prefix + task_key(after);
    it.Seek(from);
    if (it.Valid() && it.key() == from) it.Next();
  } else if (after == 0) {
    it.SeekForPrev(prefix + task_key(std::numeric_limits<task_id>::max()));
  } else {
    const std::string from = prefix + task_key(after);
    it.SeekForPrev(from);
    if (it.Valid() && it.key() == from) it.Prev();
  }
}

void step(rocksdb::Iterator& it, bool oldest) {
  if (oldest)
    it.Next();
  else
    it.Prev();
}

// The id at the end of an index key of the run `prefix`; nullopt for a key of another shape.
std::optional<task_id> entry_id(const rocksdb::Slice& key, std::size_t prefix_size) {
  if (key.size() != prefix_size + 8) return std::nullopt;
  return read_be64(rocksdb::Slice(key.data() + prefix_size, 8));
}

// Reads finished task `id`. false when "done" does not hold it (the index entry is one a retry
// left behind: skip it) or on a failure, which is recorded in the context.
bool fetch_done(query_context& ctx, task_id id, task& out) {
  const std::string key = task_key(id);
  rocksdb::PinnableSlice value;
  const rocksdb::Status s = ctx.db->Get(ctx.ro, ctx.done, key, &value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) {
    ctx.fail(from_rocksdb(s, ctx.context("cannot read task " + std::to_string(id))));
    return false;
  }
  ++ctx.stats->records;
  if (!decode_record(value, id, out)) {
    ctx.fail(status::corruption(ctx.context("cannot decode " + describe_task_key("done", key))));
    return false;
  }
  return true;
}

class task_stream {
 public:
  virtual ~task_stream() = default;
  // The next matching task in the query's order. false at the end, or after a failure (then
  // recorded in the context).
  virtual bool next(task& out) = 0;
};

// Every record of a column family ("live", or "done" when no index helps), in id order.
class record_scan final : public task_stream {
 public:
  record_scan(query_context& ctx, rocksdb::ColumnFamilyHandle* cf, const char* name,
              const task_matcher& match)
      : ctx_(ctx), name_(name), match_(match), it_(ctx.db->NewIterator(ctx.ro, cf)) {
    seek_run(*it_, std::string(), ctx_.oldest, ctx_.after);
  }

  bool next(task& out) override {
    while (it_->Valid()) {
      // (A key of another size is not a task: decode_at() reports it below.)
      if (it_->key().size() == 8 && ctx_.beyond(read_be64(it_->key()))) return false;
      task t;
      ++ctx_.stats->records;
      if (!decode_at(*it_, t)) {
        ctx_.fail(status::corruption(
            ctx_.context("cannot decode " + describe_task_key(name_, it_->key()))));
        return false;
      }
      step(*it_, ctx_.oldest);
      if (match_(t)) {
        out = std::move(t);
        return true;
      }
    }
    if (!it_->status().ok())
      ctx_.fail(from_rocksdb(it_->status(), ctx_.context("cannot list tasks")));
    return false;
  }

 private:
  query_context& ctx_;
  const char* name_;
  const task_matcher& match_;
  iterator_ptr it_;
};

// The finished tasks of one run of the index (one project, type, worker or status).
class index_run final : public task_stream {
 public:
  index_run(query_context& ctx, std::string prefix, const task_matcher& match)
      : ctx_(ctx), prefix_(std::move(prefix)), match_(match),
        it_(ctx.db->NewIterator(ctx.ro, ctx.index)) {
    seek_run(*it_, prefix_, ctx_.oldest, ctx_.after);
  }

  bool next(task& out) override {
    while (it_->Valid() && it_->key().starts_with(prefix_)) {
      ++ctx_.stats->index_entries;
      const auto id = entry_id(it_->key(), prefix_.size());
      if (id && ctx_.beyond(*id)) return false;
      step(*it_, ctx_.oldest);
      task t;
      if (!id || !fetch_done(ctx_, *id, t)) {
        if (!ctx_.error.is_ok()) return false;
        continue;
      }
      if (match_(t)) {
        out = std::move(t);
        return true;
      }
    }
    if (!it_->status().ok())
      ctx_.fail(from_rocksdb(it_->status(), ctx_.context("cannot read the index")));
    return false;
  }

 private:
  query_context& ctx_;
  std::string prefix_;
  const task_matcher& match_;
  iterator_ptr it_;
};

// Counts the entries of an index run, stopping at `cap`.
std::size_t count_run(query_context& ctx, const std::string& prefix, std::size_t cap) {
  iterator_ptr it(ctx.db->NewIterator(ctx.ro, ctx.index));
  std::size_t n = 0;
  for (it->Seek(prefix); n < cap && it->Valid() && it->key().starts_with(prefix); it->Next()) ++n;
  ctx.stats->index_entries += n;
  if (!it->status().ok())
    ctx.fail(from_rocksdb(it->status(), ctx.context("cannot read the index")));
  return n;
}

// Key bounds [first, past) of the index run `prefix`: every key of it is `prefix` + 8 bytes.
std::pair<std::string, std::string> run_bounds(const std::string& prefix) {
  return {prefix, prefix + std::string(9, '\xff')};
}

// Roughly how many index entries the key ranges hold, without reading any: RocksDB's count
// estimate for the memtables, and for the files their byte span divided by the average size of
// an index entry on disk. Good to a small factor: enough to compare candidates that counting up
// to the cap could not tell apart.
std::uint64_t approximate_entries(query_context& ctx,
                                  const std::vector<std::pair<std::string, std::string>>& bounds) {
  std::vector<rocksdb::Range> ranges;
  ranges.reserve(bounds.size());
  std::uint64_t in_memory = 0;
  for (const auto& [first, past] : bounds) {
    ranges.emplace_back(first, past);
    std::uint64_t count = 0, size = 0;
    ctx.db->GetApproximateMemTableStats(ctx.index, ranges.back(), &count, &size);
    in_memory += count;
  }
  rocksdb::SizeApproximationOptions o;
  o.include_memtables = false;
  o.include_files = true;
  std::vector<std::uint64_t> sizes(ranges.size(), 0);
  if (!ctx.db->GetApproximateSizes(o, ctx.index, ranges.data(), static_cast<int>(ranges.size()),
                                   sizes.data())
           .ok())
    return in_memory;  // an estimate only: without the files' share it is still a lower bound
  std::uint64_t file_bytes = 0;
  for (std::uint64_t n : sizes) file_bytes += n;
  std::uint64_t keys = 0, sst_bytes = 0, active = 0, immutable = 0;
  const auto property = [&](const std::string& name, std::uint64_t& out) {
    return ctx.db->GetIntProperty(ctx.index, name, &out);
  };
  if (file_bytes == 0 || !property(rocksdb::DB::Properties::kEstimateNumKeys, keys) ||
      !property(rocksdb::DB::Properties::kTotalSstFilesSize, sst_bytes) ||
      !property(rocksdb::DB::Properties::kNumEntriesActiveMemTable, active) ||
      !property(rocksdb::DB::Properties::kNumEntriesImmMemTables, immutable))
    return in_memory;
  const std::uint64_t in_files = keys > active + immutable ? keys - active - immutable : 0;
  if (in_files == 0 || sst_bytes == 0) return in_memory;
  return in_memory + static_cast<std::uint64_t>(static_cast<double>(file_bytes) *
                                                static_cast<double>(in_files) /
                                                static_cast<double>(sst_bytes));
}

struct time_bucket {
  std::size_t level = 0;
  std::uint64_t bucket = 0;
};

// Buckets whose union holds [lo, hi] (time_order values, inclusive): at each point the largest
// bucket that starts there and fits, so smallest-size buckets appear only at the two edges,
// where they may reach outside the range (their entries carry the time, to be checked).
std::vector<time_bucket> cover(std::uint64_t lo, std::uint64_t hi) {
  std::vector<time_bucket> out;
  std::uint64_t at = lo;
  for (;;) {
    std::size_t level = 0;
    for (std::size_t l = time_shifts.size(); l-- > 1;) {
      const std::uint64_t size = std::uint64_t{1} << time_shifts[l];
      if ((at & (size - 1)) == 0 && hi - at >= size - 1) {
        level = l;
        break;
      }
    }
    out.push_back(time_bucket{level, at >> time_shifts[level]});
    const std::uint64_t last = at | ((std::uint64_t{1} << time_shifts[level]) - 1);
    if (last >= hi) break;
    at = last + 1;
  }
  return out;
}

// A time range of the filter ([from, to) ms, 0 = open) as inclusive time_order bounds, narrowed
// to the buckets that hold any entry; false when nothing can match.
bool indexed_time_range(query_context& ctx, millis from, millis to, std::uint64_t& lo,
                        std::uint64_t& hi) {
  lo = from == 0 ? 0 : time_order(from);
  if (to != 0 && time_order(to) == 0) return false;
  hi = to == 0 ? std::numeric_limits<std::uint64_t>::max() : time_order(to) - 1;
  // Open ends would otherwise be covered up to the end of time: bound them by the smallest-size
  // buckets actually present (the first and last keys of that size).
  const std::string sized = std::string{tag_finished, '\0'};
  iterator_ptr it(ctx.db->NewIterator(ctx.ro, ctx.index));
  it->Seek(sized);
  if (!it->Valid() || !it->key().starts_with(sized) || it->key().size() != sized.size() + 16) {
    if (!it->status().ok())
      ctx.fail(from_rocksdb(it->status(), ctx.context("cannot read the index")));
    return false;
  }
  const auto bucket_of = [&](const rocksdb::Slice& key) {
    return read_be64(rocksdb::Slice(key.data() + sized.size(), 8));
  };
  const std::uint64_t first = bucket_of(it->key()) << time_shifts[0];
  it->SeekForPrev(sized + std::string(16, '\xff'));
  if (!it->Valid() || !it->key().starts_with(sized) || it->key().size() != sized.size() + 16) {
    if (!it->status().ok())
      ctx.fail(from_rocksdb(it->status(), ctx.context("cannot read the index")));
    return false;
  }
  const std::uint64_t last = (bucket_of(it->key()) << time_shifts[0]) |
                             ((std::uint64_t{1} << time_shifts[0]) - 1);
  ctx.stats->index_entries += 2;
  lo = std::max(lo, first);
  hi = std::min(hi, last);
  return lo <= hi;
}

// The finished tasks with a finish time in a range: the buckets covering
// it, merged by id. Each round seeks every bucket to the cursor and keeps the `want` ids nearest
// to it (a bucket is read only until it passes the farthest kept), so memory stays O(want)
// and a round reads little more than `want` entries plus one seek per bucket.
class time_merge final : public task_stream {
 public:
  time_merge(query_context& ctx, std::uint64_t lo, std::uint64_t hi, const task_matcher& match,
             std::size_t want)
      : ctx_(ctx),
        lo_(lo),
        hi_(hi),
        buckets_(cover(lo, hi)),
        match_(match),
        want_(want),
        cursor_(ctx.after) {}

  bool next(task& out) override {
    for (;;) {
      while (pos_ < round_.size()) {
        const task_id id = round_[pos_++];
        task t;
        if (!fetch_done(ctx_, id, t)) {
          if (!ctx_.error.is_ok()) return false;
          continue;
        }
        if (match_(t)) {
          out = std::move(t);
          return true;
        }
      }
      if (exhausted_ || !collect()) return false;
    }
  }

  // Roughly the entries of the covering buckets (see approximate_entries).
  std::uint64_t approximate() {
    std::vector<std::pair<std::string, std::string>> bounds;
    bounds.reserve(buckets_.size());
    for (const auto& b : buckets_) bounds.push_back(run_bounds(time_prefix(b.level, b.bucket)));
    return approximate_entries(ctx_, bounds);
  }

  // Counts the entries in range, stopping at `cap`: how selective this index is.
  std::size_t count(std::size_t cap) {
    std::size_t n = 0;
    iterator_ptr it(ctx_.db->NewIterator(ctx_.ro, ctx_.index));
    for (const auto& b : buckets_) {
      const std::string prefix = time_prefix(b.level, b.bucket);
      for (it->Seek(prefix); n < cap && it->Valid() && it->key().starts_with(prefix); it->Next()) {
        ++ctx_.stats->index_entries;
        if (b.level != 0 || in_range(it->value())) ++n;
      }
      if (n >= cap) break;
    }
    if (!it->status().ok())
      ctx_.fail(from_rocksdb(it->status(), ctx_.context("cannot read the index")));
    return n;
  }

 private:
  bool in_range(const rocksdb::Slice& value) const {
    if (value.size() != 8) return false;  // not a smallest-size entry: ignore it
    const std::uint64_t at = read_be64(value);
    return at >= lo_ && at <= hi_;
  }

  // The next round of ids after the cursor, nearest first; false on a failure.
  bool collect() {
    std::set<task_id> nearest;  // ordered, and one id however many entries name it
    const auto farthest = [&] {
      return ctx_.oldest ? std::prev(nearest.end()) : nearest.begin();
    };
    iterator_ptr it(ctx_.db->NewIterator(ctx_.ro, ctx_.index));
    for (std::size_t i = 0; i < buckets_.size(); ++i) {
      // Ids grow with time, so the buckets at the end the query starts from go first: they fill
      // the set, and most others are left after a look at their first entry.
      const auto& b = buckets_[ctx_.oldest ? i : buckets_.size() - 1 - i];
      const std::string prefix = time_prefix(b.level, b.bucket);
      for (seek_run(*it, prefix, ctx_.oldest, cursor_);
           it->Valid() && it->key().starts_with(prefix); step(*it, ctx_.oldest)) {
        ++ctx_.stats->index_entries;
        const auto id = entry_id(it->key(), prefix.size());
        if (!id) continue;
        // A run is in id order: once the set is full, or past the window, the rest of this
        // bucket is farther.
        if (ctx_.beyond(*id) || (nearest.size() == want_ && !ctx_.before(*id, *farthest()))) break;
        if (b.level == 0 && !in_range(it->value())) continue;
        nearest.insert(*id);
        if (nearest.size() > want_) nearest.erase(farthest());
      }
      if (!it->status().ok()) {
        ctx_.fail(from_rocksdb(it->status(), ctx_.context("cannot read the index")));
        return false;
      }
    }
    exhausted_ = nearest.size() < want_;
    round_.assign(nearest.begin(), nearest.end());
    if (!ctx_.oldest) std::reverse(round_.begin(), round_.end());
    pos_ = 0;
    if (!round_.empty()) cursor_ = round_.back();
    // Newest first, a cursor of 0 would mean "from the top" again.
    if (!ctx_.oldest && cursor_ == 0) exhausted_ = true;
    want_ = std::min(want_ * 2, max_round);
    return true;
  }

  query_context& ctx_;
  std::uint64_t lo_, hi_;
  std::vector<time_bucket> buckets_;
  const task_matcher& match_;
  std::size_t want_;
  task_id cursor_;
  std::vector<task_id> round_;
  std::size_t pos_ = 0;
  bool exhausted_ = false;
};

// ---- A created range as an id window ----
//
// created_at does not decrease with the id (the store's contract), so the tasks created in
// [from, to) are those with ids in [first id created at or after `from`, first id created at
// or after `to`), whether live or finished. Each bound is found by bisecting the id space,
// reading at each step the first task at or after the probed id: about 2 log2(ids) seeks and
// records for the whole query, instead of an index entry per task and bucket size written by
// every finishing task.
class created_bisection {
 public:
  explicit created_bisection(query_context& ctx)
      : ctx_(ctx),
        live_(ctx.db->NewIterator(ctx.ro, ctx.live)),
        done_(ctx.db->NewIterator(ctx.ro, ctx.done)) {}

  // One past the highest id of any task; 0 when there are none (or on a failure, recorded in
  // the context).
  task_id end() {
    task_id end = 0;
    for (auto* it : {live_.get(), done_.get()}) {
      it->SeekToLast();
      if (!it->status().ok()) {
        ctx_.fail(from_rocksdb(it->status(), ctx_.context("cannot list tasks")));
        return 0;
      }
      if (it->Valid() && it->key().size() == 8) end = std::max(end, read_be64(it->key()) + 1);
    }
    return end;
  }

  // The lowest id in [0, end] whose tasks from it on were all created at or after `at`.
  task_id first_created_from(millis at, task_id end) {
    task_id lo = 0, hi = end;
    while (lo < hi && ctx_.error.is_ok()) {
      const task_id mid = lo + (hi - lo) / 2;
      const auto created = created_at_from(mid);
      if (!created || *created >= at)
        hi = mid;
      else
        lo = mid + 1;
    }
    return lo;
  }

 private:
  // created_at of the first task with an id >= `id`; nullopt if there is none (or on a
  // failure, recorded in the context).
  std::optional<millis> created_at_from(task_id id) {
    const std::string key = task_key(id);
    rocksdb::Iterator* first = nullptr;
    for (auto* it : {live_.get(), done_.get()}) {
      it->Seek(key);
      if (!it->status().ok()) {
        ctx_.fail(from_rocksdb(it->status(), ctx_.context("cannot list tasks")));
        return std::nullopt;
      }
      if (it->Valid() && (first == nullptr || it->key().compare(first->key()) < 0)) first = it;
    }
    if (first == nullptr) return std::nullopt;
    ++ctx_.stats->bisection_records;
    task t;
    if (!decode_at(*first, t)) {
      ctx_.fail(status::corruption(
          ctx_.context("cannot decode " +
                       describe_task_key(first == live_.get() ? "live" : "done", first->key()))));
      return std::nullopt;
    }
    return t.created_at;
  }

  query_context& ctx_;
  iterator_ptr live_, done_;
};

// Narrows the context's id window to the filter's created range; false when it holds no id.
bool created_window(query_context& ctx, const task_filter& f) {
  if (f.created_from == 0 && f.created_to == 0) return true;
  created_bisection b(ctx);
  const task_id end = b.end();
  const task_id first = f.created_from == 0 ? 0 : b.first_created_from(f.created_from, end);
  const task_id past = f.created_to == 0 ? end : b.first_created_from(f.created_to, end);
  if (!ctx.error.is_ok() || first >= past) return false;
  ctx.lowest = first;
  ctx.highest = past - 1;
  // The cursor starts the walk: move it to the window's edge when it lies outside.
  if (ctx.oldest && first > 0)
    ctx.after = std::max(ctx.after, first - 1);
  else if (!ctx.oldest && (ctx.after == 0 || ctx.after > past))
    ctx.after = past;
  return true;
}

// Chooses how to find the finished tasks a filter can match and returns that stream.
// Candidates are the indexes the filter can use; each is judged by the number of finished tasks
// it would make us read: known exactly from the counts for project and status, counted (up to
// the cap, and to the best so far) for the rest. With none, or when the best would still read
// most finished tasks (a scan reads them in order, cheaper than a lookup each), "done" is
// walked in id order.
std::unique_ptr<task_stream> plan_done(query_context& ctx, const task_filter& f,
                                       const task_matcher& match,
                                       const std::map<std::string, status_counts>& counts) {
  std::uint64_t done_total = 0, in_project = 0, in_status = 0;
  for (const auto& [project, c] : counts)
    for (std::size_t i = 0; i < c.size(); ++i) {
      if (!is_final(static_cast<task_status>(i))) continue;
      done_total += c[i];
      if (f.project && project == *f.project) in_project += c[i];
      if (f.status && static_cast<task_status>(i) == *f.status) in_status += c[i];
    }

  enum class choice { scan, project, type, worker, status, finished, created };
  choice best = choice::scan;
  std::uint64_t best_estimate = std::numeric_limits<std::uint64_t>::max();
  const auto consider = [&](choice c, std::uint64_t estimate) {
    if (estimate < best_estimate) {
      best = c;
      best_estimate = estimate;
    }
  };
  const auto cap = [&] {
    return static_cast<std::size_t>(std::min<std::uint64_t>(best_estimate, probe_cap));
  };

  // Tasks no worker held have no entry: an empty name can only be scanned for.
  const bool by_worker = f.worker && !f.worker->empty();
  const bool by_finished = f.finished_from != 0 || f.finished_to != 0;
  const bool by_created = f.created_from != 0 || f.created_to != 0;
  // With a single usable index there is nothing to compare: take it without counting (a report
  // paging through a wide finished range would otherwise count it again for every page).
  const bool judge = (f.project ? 1 : 0) + (f.status ? 1 : 0) + (f.type ? 1 : 0) +
                         (by_worker ? 1 : 0) + (by_finished ? 1 : 0) + (by_created ? 1 : 0) >
                     1;
  // `count(limit)` counts a candidate's entries, stopping at `limit`; a count that ended below
  // it is exact. One that stopped at the best so far loses. One that stopped at the cap says
  // only "at least that many": RocksDB's estimate (`approximate()`) stands in for the rest.
  const auto judge_by = [&](choice c, auto&& count, auto&& approximate) {
    if (!judge) return consider(c, 1);
    const std::size_t limit = cap();
    const std::size_t n = count(limit);
    if (n < limit) return consider(c, n);
    if (limit == probe_cap) consider(c, std::max<std::uint64_t>(limit, approximate()));
  };
  const auto run_estimate = [&](const std::string& prefix) {
    return [&ctx, prefix] { return approximate_entries(ctx, {run_bounds(prefix)}); };
  };

  if (f.project) consider(choice::project, in_project);
  if (f.status) consider(choice::status, in_status);
  if (f.type) {
    const std::string prefix = name_prefix(tag_type, *f.type);
    judge_by(
        choice::type, [&](std::size_t limit) { return count_run(ctx, prefix, limit); },
        run_estimate(prefix));
  }
  if (by_worker) {
    const std::string prefix = name_prefix(tag_worker, *f.worker);
    judge_by(
        choice::worker, [&](std::size_t limit) { return count_run(ctx, prefix, limit); },
        run_estimate(prefix));
  }

  std::unique_ptr<time_merge> by_finished_at;
  if (by_finished) {
    std::uint64_t lo = 0, hi = 0;
    if (indexed_time_range(ctx, f.finished_from, f.finished_to, lo, hi)) {
      const std::size_t want = std::clamp<std::size_t>(f.limit, min_round, max_round);
      by_finished_at = std::make_unique<time_merge>(ctx, lo, hi, match, want);
      judge_by(
          choice::finished, [&](std::size_t limit) { return by_finished_at->count(limit); },
          [&] { return by_finished_at->approximate(); });
    } else if (ctx.error.is_ok()) {
      consider(choice::finished, 0);  // no indexed time in range: nothing finished matches
    }
  }
  if (!ctx.error.is_ok()) return nullptr;
  // A created range is the id window already: at most that many finished records to read.
  if (by_created) consider(choice::created, judge ? ctx.highest - ctx.lowest + 1 : 1);

  // "done" is walked when the filter names no index, or the best one covers most tasks anyway.
  if (best != choice::scan && best_estimate > 0 && best_estimate * 2 > done_total)
    best = choice::scan;
  const auto plan = [&](const char* name) { ctx.stats->done_plan = name; };
  switch (best) {
    case choice::project:
      plan("project");
      return std::make_unique<index_run>(ctx, name_prefix(tag_project, *f.project), match);
    case choice::type:
      plan("type");
      return std::make_unique<index_run>(ctx, name_prefix(tag_type, *f.type), match);
    case choice::worker:
      plan("worker");
      return std::make_unique<index_run>(ctx, name_prefix(tag_worker, *f.worker), match);
    case choice::status:
      plan("status");
      return std::make_unique<index_run>(ctx, status_prefix(*f.status), match);
    case choice::finished:
      plan("finished");
      if (!by_finished_at) return nullptr;  // nothing in range
      return by_finished_at;
    case choice::created:
      plan("created");
      return std::make_unique<record_scan>(ctx, ctx.done, "done", match);
    case choice::scan:
      break;
  }
  plan("scan");
  return std::make_unique<record_scan>(ctx, ctx.done, "done", match);
}

// A range [from, to) that nothing can be in.
bool empty_range(millis from, millis to) { return to != 0 && to <= from; }

}  // namespace

status task_store::list(const task_filter& filter, std::vector<task>& out, task_id& next,
                        query_stats* stats) {
  out.clear();
  next = 0;
  query_stats unused;
  query_stats& tally = stats != nullptr ? *stats : unused;
  tally = query_stats{};
  tally.done_plan = "none";
  if (filter.limit == 0 || empty_range(filter.created_from, filter.created_to) ||
      empty_range(filter.finished_from, filter.finished_to) ||
      (filter.priority_min && filter.priority_max && *filter.priority_min > *filter.priority_max))
    return status::ok();
  const impl& d = *impl_;

  // One snapshot for every read: a task moving from "live" to "done" meanwhile is seen once,
  // on one side, and an index entry agrees with the record it points to.
  rocksdb::ManagedSnapshot snapshot(d.db.get());
  query_context ctx;
  ctx.db = d.db.get();
  ctx.live = d.cf(cf_live);
  ctx.done = d.cf(cf_done);
  ctx.index = d.cf(cf_index_keys);
  ctx.ro.snapshot = snapshot.snapshot();
  ctx.oldest = filter.oldest_first;
  ctx.after = filter.after;
  ctx.stats = &tally;
  ctx.dir = d.dir;
  const task_matcher match(filter);
  if (!created_window(ctx, filter)) return ctx.error;

  // A finished range rules out live tasks (they have no finished_at); a status, one side.
  const bool finished_range = filter.finished_from != 0 || filter.finished_to != 0;
  const bool want_live = !finished_range && (!filter.status || !is_final(*filter.status));
  const bool want_done = !filter.status || is_final(*filter.status);

  std::unique_ptr<task_stream> live, done;
  if (want_live) live = std::make_unique<record_scan>(ctx, ctx.live, "live", match);
  if (want_done) done = plan_done(ctx, filter, match, counts());
  if (!ctx.error.is_ok()) return ctx.error;

  // Merge by id: each side already yields matches in the query's order.
  std::optional<task> live_head, done_head;
  const auto pull = [](task_stream* s, std::optional<task>& head) {
    if (s == nullptr || head) return;
    task t;
    if (s->next(t)) head = std::move(t);
  };
  while (out.size() < filter.limit) {
    pull(live.get(), live_head);
    pull(done.get(), done_head);
    if (!ctx.error.is_ok()) return ctx.error;
    if (!live_head && !done_head) break;
    auto& head = live_head && (!done_head || ctx.before(live_head->id, done_head->id))
                     ? live_head
                     : done_head;
    out.push_back(std::move(*head));
    head.reset();
  }
  // A full page may have more behind it; looking would cost another search, so say "maybe".
  if (out.size() == filter.limit) next = out.back().id;
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
  bool at_end = false;  // the walk reached its end: the pass is complete
  std::string next;     // where the following walk resumes (empty: from the start)
};

// Visits at most `budget` entries of `cf` from `cursor` (the first key not yet examined, empty
// for the start) up to `end` (exclusive; empty for the end of the column family) in key order.
// `visit(key, value)` must not write.
template <class Visit>
rocksdb::Status scan(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* cf, const std::string& cursor,
                     const std::string& end, std::size_t budget, Visit&& visit, scan_outcome& out) {
  out = scan_outcome{};
  rocksdb::ReadOptions ro;
  // A background walk over old data: keep it from evicting the blocks get() and list() use.
  ro.fill_cache = false;
  const rocksdb::Slice upper(end);
  if (!end.empty()) ro.iterate_upper_bound = &upper;
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

expired_entries expired_entries::take(std::size_t n) {
  expired_entries part;
  const auto move_back = [&n](std::vector<std::string>& from, std::vector<std::string>& to) {
    const std::size_t k = std::min(n, from.size());
    to.assign(std::make_move_iterator(from.end() - static_cast<std::ptrdiff_t>(k)),
              std::make_move_iterator(from.end()));
    from.resize(from.size() - k);
    n -= k;
  };
  move_back(tasks, part.tasks);
  move_back(keys, part.keys);
  return part;
}

namespace {

// The smallest-size finish time entries ('F' 0 bucket id -> exact time): retention finds
// expired tasks through them.
constexpr std::size_t finish_entry_size = 1 + 1 + 8 + 8;  // tag, level, bucket, id

task_id finish_entry_id(const rocksdb::Slice& key) {
  return read_be64(rocksdb::Slice(key.data() + finish_entry_size - 8, 8));
}

}  // namespace

status task_store::find_expired(millis finished_before, millis keys_before, std::size_t max_items,
                                purge_cursor& cursor, expired_entries& out) const {
  out = expired_entries{};
  if (max_items == 0) return status::invalid_argument("find_expired needs max_items > 0");
  impl& d = *impl_;
  const std::uint64_t cutoff = time_order(finished_before);
  const auto visit_task = [&](const rocksdb::Slice& key, const rocksdb::Slice& value) {
    if (key.size() != finish_entry_size || value.size() != 8)
      ++out.malformed;
    else if (read_be64(value) < cutoff)
      out.tasks.push_back(key.ToString());
  };
  const auto visit_key = [&](const rocksdb::Slice& key, const rocksdb::Slice& value) {
    task_id id = 0;
    millis created_at = 0;
    // An unreadable entry would fail find_idempotent() for its key forever: a candidate too.
    if (!decode_idempotency(value, id, created_at) || created_at < keys_before)
      out.keys.push_back(key.ToString());
  };

  // Changes are made to a copy, kept only if every walk succeeds.
  purge_cursor next = cursor;
  std::size_t budget = max_items;
  const auto walk = [&](std::string& at, bool& done, cf_index i, const std::string& start,
                        const std::string& end, std::size_t limit, auto& visit) {
    if (done || limit == 0) return rocksdb::Status::OK();
    scan_outcome o;
    const rocksdb::Status st = scan(*d.db, d.cf(i), at.empty() ? start : at, end, limit, visit, o);
    if (!st.ok()) return st;
    budget -= o.examined;
    out.examined += o.examined;
    done = o.at_end;
    at = std::move(o.next);
    return rocksdb::Status::OK();
  };
  // The finish time entries from the first up to the end of the cutoff's bucket.
  const std::string tasks_start{tag_finished, '\0'};
  std::string tasks_end;
  append_time_prefix(tasks_end, 0, (cutoff >> time_shifts[0]) + 1);
  const auto walk_tasks = [&](std::size_t limit) {
    return walk(next.tasks, next.tasks_done, cf_index_keys, tasks_start, tasks_end, limit,
                visit_task);
  };
  // Half of the budget each while both passes run, the part one side leaves unused going to the
  // other, so that a long pass over one does not hold up the other.
  const std::string everything;
  rocksdb::Status s = walk_tasks(next.keys_done ? budget : budget - budget / 2);
  if (s.ok())
    s = walk(next.keys, next.keys_done, cf_idempotency, everything, everything, budget, visit_key);
  if (s.ok()) s = walk_tasks(budget);
  if (!s.ok()) return from_rocksdb(s, d.context("cannot read for purge"));

  // A side whose pass is done waits for the other, so that the round ends (and the caller hears
  // "no more") once both are, instead of the two passes restarting out of step forever.
  out.more = !(next.tasks_done && next.keys_done);
  cursor = out.more ? std::move(next) : purge_cursor{};
  return status::ok();
}

status task_store::purge(const expired_entries& found, millis finished_before, millis keys_before,
                         purge_result& out) {
  out = purge_result{};
  impl& d = *impl_;
  // Held from the reads on: a write in between could retry a task this call is about to delete.
  std::lock_guard<std::mutex> lock(d.write_mutex);
  rocksdb::WriteBatch wb;
  std::map<std::string, status_counts> staged;
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;  // old data, read once

  std::vector<const std::string*> entries;  // the well-formed finish time entries
  std::vector<std::string> keys;            // and the keys of their records
  entries.reserve(found.tasks.size());
  keys.reserve(found.tasks.size());
  for (const auto& entry : found.tasks) {
    if (entry.size() != finish_entry_size) continue;
    entries.push_back(&entry);
    keys.push_back(task_key(finish_entry_id(entry)));
  }
  const auto records = d.read_batch(cf_done, ro, keys);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const task_id id = read_be64(keys[i]);
    rocksdb::Status s = records.statuses[i];
    if (s.IsNotFound()) {
      // Retried or removed since it was found (which took its entries along), or an entry
      // without its task, which leads nowhere: either way the entry can go.
      s = wb.Delete(d.cf(cf_index_keys), *entries[i]);
    } else if (s.ok()) {
      task t;
      if (!decode_record(records.values[i], id, t) || !valid_status(t.status)) {
        ++out.unreadable;  // left in place: it is data, and recover() or get() will report it
        continue;
      }
      // Finished again since it was found: not old any more.
      if (t.finished_at == 0 || t.finished_at >= finished_before) continue;
      s = wb.Delete(d.cf(cf_done), keys[i]);
      if (s.ok()) s = stage_index(wb, d.cf(cf_index_keys), t, /*add=*/false);
      if (s.ok()) {
        take_one(d.staged_counts(staged, t.project), t.status);
        ++out.removed[t.project][static_cast<std::size_t>(t.status)];
      }
    }
    if (!s.ok())
      return from_rocksdb(s, d.context("cannot stage purge of task " + std::to_string(id)));
  }

  const auto values = d.read_batch(cf_idempotency, ro, found.keys);
  for (std::size_t i = 0; i < found.keys.size(); ++i) {
    rocksdb::Status s = values.statuses[i];
    if (s.IsNotFound()) continue;
    if (s.ok()) {
      task_id id = 0;
      millis created_at = 0;
      const bool readable = decode_idempotency(values.values[i], id, created_at);
      if (!readable) ++out.unreadable;
      if (readable && created_at >= keys_before) continue;  // used again since
      s = wb.Delete(d.cf(cf_idempotency), found.keys[i]);
      if (s.ok()) ++out.keys_removed;
    }
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage purge of an idempotency key"));
  }
  if (wb.Count() == 0) return status::ok();
  if (status w = d.write(wb, staged); !w.is_ok()) {
    out = purge_result{};
    return w;
  }
  return status::ok();
}

std::map<std::string, status_counts> task_store::counts() const {
  std::lock_guard<std::mutex> lock(impl_->counts_mutex);
  return impl_->counts;
}

const std::vector<int>& task_store::cpus() const { return impl_->cpus; }

}  // namespace dispatch::persistence
