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

void write_batch::set_last_id(task_id id) { last_id_ = id; }

void write_batch::clear() {
  tasks_.clear();
  projects_.clear();
  last_id_.reset();
}

namespace {

// Column families, in the order they are passed to DB::Open (RocksDB requires "default").
enum cf_index : std::size_t { cf_default, cf_live, cf_done, cf_meta, cf_projects, cf_count };
constexpr std::array<const char*, cf_count> cf_names = {"default", "live", "done", "meta",
                                                       "projects"};

constexpr std::string_view last_id_key = "last_id";
constexpr std::string_view counts_prefix = "counts/";

// Stored formats. These are on disk: change them only with a migration.
constexpr std::size_t counts_size = 8 * task_status_count;  // 6 x little-endian uint64
constexpr unsigned char settings_version = 1;
constexpr std::size_t settings_size = 1 + 1 + 4 + 4;  // version, paused, max_inflight, weight

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
  if (s.size() != counts_size) return false;
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = read_le(s.data() + 8 * i, 8);
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
  // Finished tasks only grow and are read rarely: the one place compression pays.
  o.compression = done_compression();
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

}  // namespace

// ---------------------------------------------------------------------------------------------

struct task_store::impl {
  std::string dir;
  rocksdb::WriteOptions write_options;
  // Declared before the handles, so destroyed after them: RocksDB requires every column family
  // handle to be released before the DB is deleted.
  std::unique_ptr<rocksdb::DB> db;
  std::array<cf_ptr, cf_count> cfs;

  // Written only by apply() (the single writer), read by counts() from any thread.
  mutable std::mutex counts_mutex;
  std::map<std::string, status_counts> counts;

  ~impl() {
    for (auto& h : cfs) h.reset();
    // Close() reports errors the destructor cannot act on; everything acknowledged is already
    // in the WAL, so nothing is lost by ignoring it.
    if (db) db->Close().PermitUncheckedError();
  }

  rocksdb::ColumnFamilyHandle* cf(cf_index i) const { return cfs[i].get(); }

  std::string context(const std::string& what) const { return what + " in store " + dir; }

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
  std::map<std::string, status_counts> touched;
  {
    std::lock_guard<std::mutex> lock(d.counts_mutex);
    for (const auto& change : batch.tasks_) {
      if (touched.count(change.t.project) != 0) continue;
      const auto found = d.counts.find(change.t.project);
      touched[change.t.project] = found != d.counts.end() ? found->second : status_counts{};
    }
  }

  std::string value;
  for (const auto& change : batch.tasks_) {
    const task& t = change.t;
    if (!valid_status(t.status) || (change.previous && !valid_status(*change.previous)))
      return status::invalid_argument("task " + std::to_string(t.id) + " has an unknown status");
    const std::string key = task_key(t.id);
    protocol::encode_task(t, value);
    const bool final = is_final(t.status);
    s = wb.Put(d.cf(final ? cf_done : cf_live), key, value);
    // Crossing between live and final moves the record, in this same atomic batch.
    if (s.ok() && change.previous && is_final(*change.previous) != final)
      s = wb.Delete(d.cf(final ? cf_live : cf_done), key);
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage task " + std::to_string(t.id)));

    auto& c = touched[t.project];
    if (change.previous) {
      // Clamped: a caller's wrong `previous` must not wrap a count to 2^64-1.
      auto& from = c[static_cast<std::size_t>(*change.previous)];
      if (from > 0) --from;
    }
    ++c[static_cast<std::size_t>(t.status)];
  }

  for (const auto& [name, settings] : batch.projects_) {
    s = wb.Put(d.cf(cf_projects), name, encode_settings(settings));
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage project '" + name + "'"));
  }
  if (batch.last_id_) {
    s = wb.Put(d.cf(cf_meta), rocksdb::Slice(last_id_key.data(), last_id_key.size()),
               task_key(*batch.last_id_));
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage last id"));
  }
  for (const auto& [project, c] : touched) {
    s = wb.Put(d.cf(cf_meta), std::string(counts_prefix) + project, encode_counts(c));
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage counts of '" + project + "'"));
  }

  s = d.db->Write(d.write_options, &wb);
  if (!s.ok()) return from_rocksdb(s, d.context("cannot write"));

  std::lock_guard<std::mutex> lock(d.counts_mutex);
  for (auto& [project, c] : touched) d.counts[project] = c;
  return status::ok();
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

std::map<std::string, status_counts> task_store::counts() const {
  std::lock_guard<std::mutex> lock(impl_->counts_mutex);
  return impl_->counts;
}

}  // namespace dispatch::persistence
