#include "persistence/event_log.hpp"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/table_properties_collectors.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <utility>

namespace dispatch::persistence {
namespace {

// Stored format, on disk: change it only with a new version byte and a reader for the old one.
// Key: the seq as 8 bytes big-endian, so RocksDB's bytewise order is seq order.
// Value: version 1, then `at` and `task` as 8-byte little-endian integers (`at` two's
// complement), then kind, project, worker and detail, each a 4-byte little-endian length and the
// bytes. Fixed-width fields keep the decoder a few bounds checks; events are small, so the few
// bytes a varint would save do not matter, and RocksDB compresses the blocks anyway.
constexpr unsigned char format_version = 1;
constexpr std::size_t key_size = 8;

std::string seq_key(std::uint64_t seq) {
  std::string key(key_size, '\0');
  for (std::size_t i = key_size; i > 0; --i) {
    key[i - 1] = static_cast<char>(seq & 0xffu);
    seq >>= 8;
  }
  return key;
}

std::uint64_t key_seq(const rocksdb::Slice& key) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < key_size; ++i) v = (v << 8) | static_cast<unsigned char>(key[i]);
  return v;
}

void append_le(std::string& out, std::uint64_t v, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; ++i) {
    out.push_back(static_cast<char>(v & 0xffu));
    v >>= 8;
  }
}

void append_text(std::string& out, const std::string& text) {
  append_le(out, text.size(), 4);
  out.append(text);
}

std::string encode_event(const protocol::event_record& e) {
  std::string out;
  out.reserve(1 + 8 + 8 + 4 * 4 + e.kind.size() + e.project.size() + e.worker.size() +
              e.detail.size());
  out.push_back(static_cast<char>(format_version));
  append_le(out, static_cast<std::uint64_t>(e.at), 8);
  append_le(out, e.task, 8);
  append_text(out, e.kind);
  append_text(out, e.project);
  append_text(out, e.worker);
  append_text(out, e.detail);
  return out;
}

// Reads the value front to back; every read checks that the bytes are there.
class value_reader {
 public:
  explicit value_reader(const rocksdb::Slice& s) : p_(s.data()), left_(s.size()) {}

  bool le(std::size_t bytes, std::uint64_t& v) {
    if (left_ < bytes) return false;
    v = 0;
    for (std::size_t i = bytes; i > 0; --i) v = (v << 8) | static_cast<unsigned char>(p_[i - 1]);
    advance(bytes);
    return true;
  }
  bool text(std::string& out) {
    std::uint64_t size = 0;
    if (!le(4, size) || left_ < size) return false;
    out.assign(p_, static_cast<std::size_t>(size));
    advance(static_cast<std::size_t>(size));
    return true;
  }
  bool at_end() const { return left_ == 0; }

 private:
  void advance(std::size_t n) {
    p_ += n;
    left_ -= n;
  }
  const char* p_;
  std::size_t left_;
};

bool decode_event(const rocksdb::Slice& key, const rocksdb::Slice& value,
                  protocol::event_record& out) {
  if (key.size() != key_size || value.empty() ||
      static_cast<unsigned char>(value[0]) != format_version)
    return false;
  value_reader r(rocksdb::Slice(value.data() + 1, value.size() - 1));
  std::uint64_t at = 0;
  std::uint64_t task = 0;
  if (!r.le(8, at) || !r.le(8, task) || !r.text(out.kind) || !r.text(out.project) ||
      !r.text(out.worker) || !r.text(out.detail) || !r.at_end())
    return false;
  out.seq = key_seq(key);
  out.at = static_cast<millis>(at);
  out.task = task;
  return true;
}

bool matches(const event_query& q, const protocol::event_record& e) {
  if (q.project && e.project != *q.project) return false;
  if (q.kinds.empty()) return true;
  return std::any_of(q.kinds.begin(), q.kinds.end(), [&](const std::string& prefix) {
    return e.kind.compare(0, prefix.size(), prefix) == 0;
  });
}

status from_rocksdb(const rocksdb::Status& s, const std::string& context) {
  std::string msg = context + ": " + s.ToString();
  if (s.IsCorruption()) return status::corruption(std::move(msg));
  if (s.IsInvalidArgument()) return status::invalid_argument(std::move(msg));
  if (s.IsNotFound()) return status::not_found(std::move(msg));
  return status::io_error(std::move(msg));
}

// Column families: events in "default" (RocksDB requires it), so that SeekToLast finds the
// newest event; the purge mark in "meta".
constexpr const char* meta_cf = "meta";
// The highest seq purge() deleted. When every event has been purged, it is all that remains of
// the numbering, and open() must not start again at 1.
constexpr std::string_view purged_through_key = "purged_through";

rocksdb::DBOptions make_db_options() {
  rocksdb::DBOptions o;
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  // RocksDB starts a new info LOG on every open; a handful is enough to diagnose a problem.
  o.keep_log_file_num = 5;
  return o;
}

rocksdb::ColumnFamilyOptions make_events_options() {
  rocksdb::ColumnFamilyOptions o;
  // purge() deletes long runs at the front of the key space. Until compaction drops them, their
  // tombstones sit in the files; this marks a file for compaction as soon as a window of its
  // entries is mostly deletions, instead of waiting for size-triggered compaction.
  o.table_properties_collector_factories.emplace_back(
      rocksdb::NewCompactOnDeletionCollectorFactory(1000, 500));
  return o;
}

using iterator_ptr = std::unique_ptr<rocksdb::Iterator>;

// Column family handles must be released through their DB, before it closes.
struct cf_deleter {
  rocksdb::DB* db = nullptr;
  void operator()(rocksdb::ColumnFamilyHandle* h) const {
    if (db && h) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
};
using cf_ptr = std::unique_ptr<rocksdb::ColumnFamilyHandle, cf_deleter>;

}  // namespace

struct event_log::impl {
  std::string dir;
  // Declared before the handles, so destroyed after them.
  std::unique_ptr<rocksdb::DB> db;
  cf_ptr events;
  cf_ptr meta;
  rocksdb::WriteOptions write_options;  // WAL, no fsync: see the contract
  std::uint64_t last_seq = 0;
  // No stored event has a lower seq. Reads and purges seek here rather than to the start of
  // the key space, so they step over none of the tombstones purge() leaves at the front.
  std::uint64_t first_seq = 1;

  ~impl() {
    events.reset();
    meta.reset();
    // Close() reports errors the destructor cannot act on; every acknowledged write is in the
    // WAL already.
    if (db) db->Close().PermitUncheckedError();
  }

  iterator_ptr iterate() const {
    return iterator_ptr(db->NewIterator(rocksdb::ReadOptions(), events.get()));
  }

  std::string context(const std::string& what) const { return what + " in event log " + dir; }

  std::string describe(const rocksdb::Slice& key) const {
    if (key.size() == key_size) return "event " + std::to_string(key_seq(key));
    return "key 0x" + key.ToString(/*hex=*/true);
  }
};

event_log::event_log(passkey, std::unique_ptr<impl> p) : impl_(std::move(p)) {}

event_log::~event_log() = default;

status event_log::open(const std::string& dir, std::unique_ptr<event_log>& out) {
  out.reset();
  if (dir.empty()) return status::invalid_argument("cannot open event log: no directory given");
  const std::string where = "cannot open event log in " + dir;

  // Checked here so that the message says what is wrong with the path itself rather than which
  // of RocksDB's files could not be created.
  std::error_code ec;
  const auto st = std::filesystem::status(dir, ec);
  if (std::filesystem::exists(st) && !std::filesystem::is_directory(st))
    return status::io_error(where + ": the path exists and is not a directory");
  std::filesystem::create_directories(dir, ec);
  if (ec) return status::io_error(where + ": cannot create the directory: " + ec.message());

  const std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
      {rocksdb::kDefaultColumnFamilyName, make_events_options()},
      {meta_cf, rocksdb::ColumnFamilyOptions()}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  const rocksdb::Status s = rocksdb::DB::Open(make_db_options(), dir, descriptors, &handles, &raw);
  // Owned before anything can return; on failure RocksDB has left both empty.
  auto p = std::make_unique<impl>();
  p->dir = dir;
  p->db.reset(raw);
  if (handles.size() > 0) p->events = cf_ptr(handles[0], cf_deleter{raw});
  if (handles.size() > 1) p->meta = cf_ptr(handles[1], cf_deleter{raw});
  if (!s.ok()) return from_rocksdb(s, where);
  if (handles.size() != descriptors.size())
    return status::io_error(where + ": RocksDB returned an unexpected number of column families");

  // Numbering continues after the newest event stored or purged, and reads start at the oldest.
  std::string mark;
  const rocksdb::Status ms = p->db->Get(rocksdb::ReadOptions(), p->meta.get(),
                                        rocksdb::Slice(purged_through_key.data(),
                                                       purged_through_key.size()),
                                        &mark);
  if (ms.ok()) {
    if (mark.size() != key_size) return status::corruption(where + ": bad purge mark");
    p->last_seq = key_seq(mark);
    p->first_seq = p->last_seq + 1;
  } else if (!ms.IsNotFound()) {
    return from_rocksdb(ms, where + ": cannot read the purge mark");
  }
  iterator_ptr it = p->iterate();
  it->SeekToLast();
  if (it->Valid()) {
    if (it->key().size() != key_size)
      return status::corruption(where + ": unexpected " + p->describe(it->key()));
    p->last_seq = std::max(p->last_seq, key_seq(it->key()));
    it->SeekToFirst();
    if (it->Valid() && it->key().size() == key_size) p->first_seq = key_seq(it->key());
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), where + ": cannot read the events");
  it.reset();  // iterators must go before the DB they read

  out = std::make_unique<event_log>(passkey{}, std::move(p));
  return status::ok();
}

status event_log::append(std::vector<protocol::event_record>& events) {
  if (events.empty()) return status::ok();
  impl& d = *impl_;
  rocksdb::WriteBatch wb;
  for (auto& e : events) {
    e.seq = ++d.last_seq;  // used up whatever the write does (see the contract)
    const rocksdb::Status s = wb.Put(d.events.get(), seq_key(e.seq), encode_event(e));
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage event " + std::to_string(e.seq)));
  }
  const rocksdb::Status s = d.db->Write(d.write_options, &wb);
  if (!s.ok())
    return status::io_error("event log " + d.dir + " refused the write of events " +
                            std::to_string(events.front().seq) + ".." +
                            std::to_string(events.back().seq) + ": " + s.ToString());
  return status::ok();
}

status event_log::read(const event_query& q, protocol::event_list& out,
                       std::size_t max_examined) const {
  const impl& d = *impl_;
  out.events.clear();
  out.next = q.after;
  // Also keeps after + 1 below from wrapping around for after = 2^64 - 1.
  if (q.limit == 0 || q.after >= d.last_seq) return status::ok();
  max_examined = std::max<std::size_t>(max_examined, 1);

  iterator_ptr it = d.iterate();
  std::size_t examined = 0;
  for (it->Seek(seq_key(std::max(q.after + 1, d.first_seq))); it->Valid(); it->Next()) {
    protocol::event_record e;
    if (!decode_event(it->key(), it->value(), e))
      return status::corruption(d.context("unreadable " + d.describe(it->key())));
    out.next = e.seq;
    if (matches(q, e)) {
      out.events.push_back(std::move(e));
      if (out.events.size() >= q.limit) break;
    }
    if (++examined >= max_examined) break;
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), d.context("cannot read events"));
  return status::ok();
}

std::uint64_t event_log::last_seq() const { return impl_->last_seq; }

status event_log::purge(millis older_than, std::size_t max_items, event_purge_result& out) {
  out = event_purge_result{};
  if (max_items == 0) return status::invalid_argument("event log purge: max_items must be > 0");
  impl& d = *impl_;

  rocksdb::WriteBatch wb;
  std::uint64_t last_deleted = 0;
  std::size_t unreadable = 0;
  // An event to delete: unreadable, or older than the cut.
  const auto old = [&](const rocksdb::Iterator& i, bool& readable) {
    protocol::event_record e;
    readable = decode_event(i.key(), i.value(), e);
    return !readable || e.at < older_than;
  };

  iterator_ptr it = d.iterate();
  std::size_t removed = 0;
  bool readable = true;
  for (it->Seek(seq_key(d.first_seq)); it->Valid(); it->Next()) {
    if (removed == max_items) {
      out.more = old(*it, readable);  // only a peek: deleted, if at all, by the next call
      break;
    }
    if (!old(*it, readable)) break;
    if (!readable) ++unreadable;
    const rocksdb::Status s = wb.Delete(d.events.get(), it->key());
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage the deletion of an event"));
    if (it->key().size() == key_size) last_deleted = key_seq(it->key());
    ++removed;
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), d.context("cannot read events"));
  it.reset();
  if (removed == 0) return status::ok();
  if (last_deleted != 0) {
    const rocksdb::Status s =
        wb.Put(d.meta.get(), rocksdb::Slice(purged_through_key.data(), purged_through_key.size()),
               seq_key(last_deleted));
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage the purge mark"));
  }

  const rocksdb::Status s = d.db->Write(d.write_options, &wb);
  if (!s.ok()) return status::io_error("event log " + d.dir + " refused the purge: " + s.ToString());
  if (last_deleted >= d.first_seq) d.first_seq = last_deleted + 1;
  out.removed = removed;
  out.unreadable = unreadable;
  return status::ok();
}

}  // namespace dispatch::persistence
