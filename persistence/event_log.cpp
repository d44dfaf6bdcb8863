#include "persistence/event_log.hpp"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/table_properties_collectors.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace dispatch::persistence {
namespace {

// Stored format, on disk: change it only with a new format byte and a reader for the old one.
// One record per append() call: the dispatcher reports a task's events a few at a time, and a
// record per event made the log pay a memtable insert, a key and RocksDB's per-entry overhead
// for each of them on the dispatcher's hot path.
// Key: the seq of the record's first event as 8 bytes big-endian, so RocksDB's bytewise order is
// seq order; the record's events have that seq and the following ones.
// Value: a format byte, then
//  * format 2, written now: the number of events, then per event `at` as the difference from the
//    previous event's `at` (from 0 for the first), `task`, and kind, project, worker and detail,
//    each a length and the bytes. Every integer is a LEB128 varint, the difference zigzag-encoded
//    (a wall clock may step back). An event is some 20 bytes of text, and the events of one
//    append are mostly at the same millisecond: fixed-width fields would double the size.
//  * format 1, written by earlier releases, one event per record, so only read (and purged) now:
//    `at` and `task` as 8-byte little-endian integers (`at` two's complement), then kind,
//    project, worker and detail, each a 4-byte little-endian length and the bytes.
// Not msgpack, the protocol's format: nothing but this file reads these bytes, and a handful of
// varints decode with a bounds check each, without building an object tree per record.
constexpr unsigned char format_single = 1;
constexpr unsigned char format_batch = 2;
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

// Differences of `at` are computed modulo 2^64, so any two values have one, and the sign moves to
// the low bit so that small steps back stay small.
std::uint64_t zigzag(std::uint64_t difference) {
  return (difference << 1) ^ (std::uint64_t{0} - (difference >> 63));
}
std::uint64_t unzigzag(std::uint64_t v) { return (v >> 1) ^ (std::uint64_t{0} - (v & 1u)); }

void append_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80u) {
    out.push_back(static_cast<char>((v & 0x7fu) | 0x80u));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void append_text(std::string& out, const std::string& text) {
  append_varint(out, text.size());
  out.append(text);
}

// Appends the format 2 value of `events` to `out`.
void encode_batch(const std::vector<protocol::event_record>& events, std::string& out) {
  out.push_back(static_cast<char>(format_batch));
  append_varint(out, events.size());
  std::uint64_t previous_at = 0;
  for (const auto& e : events) {
    const auto at = static_cast<std::uint64_t>(e.at);
    append_varint(out, zigzag(at - previous_at));
    previous_at = at;
    append_varint(out, e.task);
    append_text(out, e.kind);
    append_text(out, e.project);
    append_text(out, e.worker);
    append_text(out, e.detail);
  }
}

// Reads a value front to back; every read checks that the bytes are there.
class value_reader {
 public:
  value_reader() = default;
  value_reader(const char* p, std::size_t size) : p_(p), left_(size) {}

  bool le(std::size_t bytes, std::uint64_t& v) {
    if (left_ < bytes) return false;
    v = 0;
    for (std::size_t i = bytes; i > 0; --i) v = (v << 8) | static_cast<unsigned char>(p_[i - 1]);
    advance(bytes);
    return true;
  }
  bool varint(std::uint64_t& v) {
    v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      if (left_ == 0) return false;
      const auto byte = static_cast<unsigned char>(*p_);
      advance(1);
      if (shift == 63 && byte > 1) return false;  // more than 64 bits
      v |= static_cast<std::uint64_t>(byte & 0x7fu) << shift;
      if ((byte & 0x80u) == 0) return true;
    }
    return false;
  }
  // A text of `size` bytes into `out`, or stepped over when out is null.
  bool bytes(std::uint64_t size, std::string* out) {
    if (left_ < size) return false;
    if (out) out->assign(p_, static_cast<std::size_t>(size));
    advance(static_cast<std::size_t>(size));
    return true;
  }
  std::size_t left() const { return left_; }

 private:
  void advance(std::size_t n) {
    p_ += n;
    left_ -= n;
  }
  const char* p_ = nullptr;
  std::size_t left_ = 0;
};

// Walks the events of one stored record, of either format, in seq order.
class record_reader {
 public:
  // Reads the key and the value's header; false when they are not a record of a known format.
  bool open(const rocksdb::Slice& key, const rocksdb::Slice& value) {
    if (key.size() != key_size || value.empty()) return false;
    next_seq_ = key_seq(key);
    r_ = value_reader(value.data() + 1, value.size() - 1);
    switch (static_cast<unsigned char>(value[0])) {
      case format_single:
        compact_ = false;
        left_ = 1;
        break;
      case format_batch:
        compact_ = true;
        if (!r_.varint(left_) || left_ == 0) return false;
        break;
      default:
        return false;
    }
    // Every event takes bytes, so a larger count is damage (and would overflow below); seq 0 is
    // never handed out.
    if (left_ > r_.left() || next_seq_ == 0 ||
        left_ - 1 > std::numeric_limits<std::uint64_t>::max() - next_seq_)
      return false;
    count_ = left_;
    last_seq_ = next_seq_ + left_ - 1;
    at_ = 0;
    return true;
  }

  std::uint64_t count() const { return count_; }
  std::uint64_t last_seq() const { return last_seq_; }
  bool done() const { return left_ == 0; }
  // The seq of the event the next read() or skip() decodes.
  std::uint64_t next_seq() const { return next_seq_; }
  // The `at` of the event last read or skipped.
  millis at() const { return static_cast<millis>(at_); }

  // Decodes the next event (every field, seq included); false if it is damaged, or it is the
  // last and bytes follow it.
  bool read(protocol::event_record& out) {
    std::uint64_t task = 0;
    if (!step(task, &out.kind, &out.project, &out.worker, &out.detail)) return false;
    out.seq = next_seq_ - 1;
    out.at = at();
    out.task = task;
    return true;
  }
  // Checks the next event like read() but copies none of its texts.
  bool skip() {
    std::uint64_t task = 0;
    return step(task, nullptr, nullptr, nullptr, nullptr);
  }

 private:
  bool step(std::uint64_t& task, std::string* kind, std::string* project, std::string* worker,
            std::string* detail) {
    if (left_ == 0) return false;
    if (compact_) {
      std::uint64_t difference = 0;
      if (!r_.varint(difference) || !r_.varint(task)) return false;
      at_ += unzigzag(difference);
    } else if (!r_.le(8, at_) || !r_.le(8, task)) {
      return false;
    }
    if (!text(kind) || !text(project) || !text(worker) || !text(detail)) return false;
    --left_;
    ++next_seq_;  // wraps only past the record's last event, where nobody asks for it
    return left_ > 0 || r_.left() == 0;
  }
  bool text(std::string* out) {
    std::uint64_t size = 0;
    return (compact_ ? r_.varint(size) : r_.le(4, size)) && r_.bytes(size, out);
  }

  value_reader r_;
  bool compact_ = true;  // format 2
  std::uint64_t next_seq_ = 0;
  std::uint64_t last_seq_ = 0;
  std::uint64_t count_ = 0;
  std::uint64_t left_ = 0;  // events not yet read
  std::uint64_t at_ = 0;
};

// What open() and purge() need to know of a whole record.
struct record_summary {
  bool readable = false;
  std::uint64_t events = 0;  // when readable
  // The highest seq in the record. For an unreadable one, the highest it could hold: a value of
  // n bytes holds at most n events (0 when the key is not a seq at all).
  std::uint64_t last_seq = 0;
  millis newest = 0;  // the latest `at` of its events, when readable
};

record_summary summarize(const rocksdb::Slice& key, const rocksdb::Slice& value) {
  record_summary s;
  if (key.size() != key_size) return s;
  const std::uint64_t first = key_seq(key);
  const std::uint64_t room = std::numeric_limits<std::uint64_t>::max() - first;
  s.last_seq = first + std::min<std::uint64_t>(value.size() > 0 ? value.size() - 1 : 0, room);
  record_reader r;
  if (!r.open(key, value)) return s;
  millis newest = std::numeric_limits<millis>::min();
  while (!r.done()) {
    if (!r.skip()) return s;
    newest = std::max(newest, r.at());
  }
  s.readable = true;
  s.events = r.count();
  s.last_seq = r.last_seq();
  s.newest = newest;
  return s;
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

// Column families: the event records in "default" (RocksDB requires it), alone, so that
// SeekToLast finds the newest record; the purge mark in "meta".
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
  // No stored event has a lower seq, and a record starts here (or later). Reads and purges seek
  // here rather than to the start of the key space, so they step over none of the tombstones
  // purge() leaves at the front.
  std::uint64_t first_seq = 1;
  // Reused by every append(), so that once they have grown to the usual batch, encoding and
  // staging a batch allocates nothing.
  std::string value;
  rocksdb::WriteBatch batch;

  ~impl() {
    events.reset();
    meta.reset();
    // Close() reports errors the destructor cannot act on; every acknowledged write is in the
    // WAL already.
    if (db) db->Close().PermitUncheckedError();
  }

  iterator_ptr iterate(const rocksdb::ReadOptions& options = rocksdb::ReadOptions()) const {
    return iterator_ptr(db->NewIterator(options, events.get()));
  }

  std::string context(const std::string& what) const { return what + " in event log " + dir; }

  std::string describe(const rocksdb::Slice& key) const {
    if (key.size() == key_size) return "record of events from " + std::to_string(key_seq(key));
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
    // A damaged newest record does not keep the daemon from starting: numbering goes on after
    // the most events it could hold, so no seq it had is handed out again (see summarize()).
    p->last_seq = std::max(p->last_seq, summarize(it->key(), it->value()).last_seq);
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
  const std::uint64_t first = d.last_seq + 1;
  for (auto& e : events) e.seq = ++d.last_seq;  // used up whatever the write does (see the contract)

  d.value.clear();
  encode_batch(events, d.value);
  d.batch.Clear();
  rocksdb::Status s = d.batch.Put(d.events.get(), seq_key(first), d.value);
  if (s.ok()) s = d.db->Write(d.write_options, &d.batch);
  // A rare huge batch (a bulk submit) must not pin its size for the life of the daemon.
  constexpr std::size_t keep_capacity = 1 << 20;
  if (d.value.capacity() > keep_capacity) std::string().swap(d.value);
  if (d.batch.GetDataSize() > keep_capacity) d.batch = rocksdb::WriteBatch();
  if (!s.ok())
    return status::io_error("event log " + d.dir + " refused the write of events " +
                            std::to_string(first) + ".." + std::to_string(d.last_seq) + ": " +
                            s.ToString());
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
  const std::uint64_t from = std::max(q.after + 1, d.first_seq);

  // `from` may lie inside a record: start at the last record that begins at or before it. The
  // lower bound ends that backward seek at first_seq, where it would otherwise walk back over
  // every tombstone purge() left before it finds there is no such record.
  const std::string lower = seq_key(d.first_seq);
  const rocksdb::Slice lower_bound(lower);
  rocksdb::ReadOptions options;
  options.iterate_lower_bound = &lower_bound;
  iterator_ptr it = d.iterate(options);
  it->SeekForPrev(seq_key(from));
  if (!it->Valid() && it->status().ok()) it->Seek(seq_key(from));

  std::size_t examined = 0;
  bool stop = false;
  protocol::event_record e;  // reused: its strings keep their buffers for the next event
  for (; it->Valid(); it->Next()) {
    record_reader r;
    if (!r.open(it->key(), it->value()))
      return status::corruption(d.context("unreadable " + d.describe(it->key())));
    if (r.last_seq() < from) continue;  // the record before `from`, from SeekForPrev
    while (!r.done() && !stop) {
      const bool wanted = r.next_seq() >= from;
      if (!(wanted ? r.read(e) : r.skip()))
        return status::corruption(d.context("unreadable event " + std::to_string(r.next_seq()) +
                                            " in the " + d.describe(it->key())));
      if (!wanted) continue;
      out.next = e.seq;
      if (matches(q, e)) {
        out.events.push_back(std::move(e));
        stop = out.events.size() >= q.limit;
      }
      if (++examined >= max_examined) stop = true;
    }
    if (stop) break;
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
  std::size_t records = 0;
  std::size_t removed = 0;
  std::size_t unreadable = 0;
  std::uint64_t purged_through = 0;  // the highest seq deleted

  iterator_ptr it = d.iterate();
  for (it->Seek(seq_key(d.first_seq)); it->Valid(); it->Next()) {
    const record_summary r = summarize(it->key(), it->value());
    // Unreadable records go too, since every read() reaching them would fail.
    const bool old = !r.readable || r.newest < older_than;
    if (records == max_items) {
      out.more = old;  // only a peek: deleted, if at all, by the next call
      break;
    }
    if (!old) break;
    const rocksdb::Status s = wb.Delete(d.events.get(), it->key());
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage the deletion of a record"));
    ++records;
    // An unreadable record's events are unknown: it counts as one.
    removed += r.readable ? static_cast<std::size_t>(r.events) : 1;
    if (!r.readable) ++unreadable;
    purged_through = std::max(purged_through, r.last_seq);
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), d.context("cannot read events"));
  if (records == 0) return status::ok();
  // An unreadable record's last seq is a bound from its size, which may overshoot the records
  // after it: a mark past them would make reads skip them (first_seq, below) and, written, could
  // later be lowered by theirs. The next record and the numbering itself bound it exactly enough.
  purged_through = std::min(purged_through, d.last_seq);
  if (it->Valid() && it->key().size() == key_size && key_seq(it->key()) > 0)
    purged_through = std::min(purged_through, key_seq(it->key()) - 1);
  it.reset();
  if (purged_through != 0) {
    const rocksdb::Status s =
        wb.Put(d.meta.get(), rocksdb::Slice(purged_through_key.data(), purged_through_key.size()),
               seq_key(purged_through));
    if (!s.ok()) return from_rocksdb(s, d.context("cannot stage the purge mark"));
  }

  const rocksdb::Status s = d.db->Write(d.write_options, &wb);
  if (!s.ok()) return status::io_error("event log " + d.dir + " refused the purge: " + s.ToString());
  if (purged_through >= d.first_seq) d.first_seq = purged_through + 1;
  out.removed = removed;
  out.unreadable = unreadable;
  return status::ok();
}

}  // namespace dispatch::persistence
