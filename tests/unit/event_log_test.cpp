// event_log against a real RocksDB, one fresh directory per test.
#include <catch2/catch.hpp>

#include "tests/support/temp_dir.hpp"

#include <rocksdb/db.h>
#include <stdlib.h>  // mkdtemp

#include <filesystem>
#include <cstdint>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "persistence/event_log.hpp"

namespace fs = std::filesystem;
using namespace dispatch;
using namespace dispatch::persistence;
using Catch::Matchers::Contains;

namespace {

// A scratch directory; the log lives in a subdirectory, so open() also exercises creating it.
class temp_dir : public dispatch::testing::temp_dir {
 public:
  temp_dir() : dispatch::testing::temp_dir("event_log_test") {}
  std::string log() const { return path() + "/events"; }
};

std::unique_ptr<event_log> open_log(const std::string& dir) {
  std::unique_ptr<event_log> log;
  const status s = event_log::open(dir, log);
  INFO(s.to_string());
  REQUIRE(s.is_ok());
  REQUIRE(log);
  return log;
}

protocol::event_record rec(std::string kind, millis at, task_id task = 0,
                           std::string project = {}, std::string worker = {},
                           std::string detail = {}) {
  protocol::event_record e;
  e.kind = std::move(kind);
  e.at = at;
  e.task = task;
  e.project = std::move(project);
  e.worker = std::move(worker);
  e.detail = std::move(detail);
  return e;
}

// Ten submits in one batch: tasks 1..9 of project "common", then task 10 of "rare".
std::vector<protocol::event_record> common_then_rare() {
  std::vector<protocol::event_record> batch;
  for (int i = 0; i < 9; ++i) batch.push_back(rec("task.submitted", i, 1 + i, "common"));
  batch.push_back(rec("task.submitted", 9, 10, "rare"));
  return batch;
}

void append(event_log& log, std::vector<protocol::event_record> events) {
  const status s = log.append(events);
  INFO(s.to_string());
  REQUIRE(s.is_ok());
}

protocol::event_list read(const event_log& log, event_query q,
                          std::size_t max_examined = event_log::default_max_examined) {
  protocol::event_list out;
  const status s = log.read(q, out, max_examined);
  INFO(s.to_string());
  REQUIRE(s.is_ok());
  return out;
}

event_query after(std::uint64_t seq, std::uint32_t limit = 1000) {
  event_query q;
  q.after = seq;
  q.limit = limit;
  return q;
}

std::vector<std::uint64_t> seqs(const protocol::event_list& page) {
  std::vector<std::uint64_t> out;
  for (const auto& e : page.events) out.push_back(e.seq);
  return out;
}

using seq_list = std::vector<std::uint64_t>;

// The events seq..last, for comparing pages.
seq_list range(std::uint64_t first, std::uint64_t last) {
  seq_list out;
  for (std::uint64_t s = first; s <= last; ++s) out.push_back(s);
  return out;
}

std::string be64(std::uint64_t v) {
  std::string out(8, '\0');
  for (std::size_t i = 8; i > 0; --i) {
    out[i - 1] = static_cast<char>(v & 0xffu);
    v >>= 8;
  }
  return out;
}

// An event as releases before batched records stored it, one per record: format byte 1, `at`
// and `task` as 8-byte little-endian integers, then kind, project, worker and detail, each a
// 4-byte little-endian length and the bytes.
std::string single_event_value(const protocol::event_record& e) {
  std::string out(1, '\x01');
  const auto le = [&out](std::uint64_t v, std::size_t bytes) {
    for (std::size_t i = 0; i < bytes; ++i, v >>= 8) out.push_back(static_cast<char>(v & 0xffu));
  };
  le(static_cast<std::uint64_t>(e.at), 8);
  le(e.task, 8);
  for (const std::string* text : {&e.kind, &e.project, &e.worker, &e.detail}) {
    le(text->size(), 4);
    out += *text;
  }
  return out;
}

// RocksDB itself on a log's directory, while no event_log has it open: writes records as an
// earlier release (or a damaged disk) would have left them, and lists what append() stored.
class raw_log {
 public:
  explicit raw_log(const std::string& dir) {
    rocksdb::DBOptions options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    const std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
        {"meta", rocksdb::ColumnFamilyOptions()}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    const rocksdb::Status s = rocksdb::DB::Open(options, dir, families, &handles, &db);
    db_.reset(db);
    handles_ = handles;
    INFO(s.ToString());
    REQUIRE(s.ok());
  }
  ~raw_log() {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    if (db_) db_->Close().PermitUncheckedError();
  }
  raw_log(const raw_log&) = delete;
  raw_log& operator=(const raw_log&) = delete;

  void put(std::uint64_t seq, const std::string& value) {
    const rocksdb::Status s = db_->Put(rocksdb::WriteOptions(), be64(seq), value);
    INFO(s.ToString());
    REQUIRE(s.ok());
  }

  // Every event record, key and value, in key order.
  std::vector<std::pair<std::string, std::string>> records() const {
    std::vector<std::pair<std::string, std::string>> out;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    for (it->SeekToFirst(); it->Valid(); it->Next())
      out.emplace_back(it->key().ToString(), it->value().ToString());
    REQUIRE(it->status().ok());
    return out;
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

}  // namespace

TEST_CASE("append numbers events from 1 and read returns them in order with every field") {
  temp_dir dir;
  auto log = open_log(dir.log());
  CHECK(log->last_seq() == 0);

  std::vector<protocol::event_record> batch = {
      rec("task.submitted", 1000, 7, "alpha", "", ""),
      rec("task.assigned", 1001, 7, "alpha", "w1", ""),
      // Arbitrary bytes survive: details come from workers and are not guaranteed to be text.
      rec("task.failed", 1002, 7, "alpha", "w1", std::string("boom\0\xff\n", 7)),
  };
  REQUIRE(log->append(batch).is_ok());
  CHECK(batch[0].seq == 1);
  CHECK(batch[1].seq == 2);
  CHECK(batch[2].seq == 3);
  CHECK(log->last_seq() == 3);
  append(*log, {rec("worker.lost", 1003, 0, "", "w1", "no heartbeat")});
  CHECK(log->last_seq() == 4);

  const auto page = read(*log, after(0));
  REQUIRE(page.events.size() == 4);
  CHECK(seqs(page) == seq_list{1, 2, 3, 4});
  CHECK(page.next == 4);
  const auto& failed = page.events[2];
  CHECK(failed.kind == "task.failed");
  CHECK(failed.at == 1002);
  CHECK(failed.task == 7);
  CHECK(failed.project == "alpha");
  CHECK(failed.worker == "w1");
  CHECK(failed.detail == std::string("boom\0\xff\n", 7));
  CHECK(page.events[3].task == 0);
  CHECK(page.events[3].detail == "no heartbeat");

  std::vector<protocol::event_record> none;
  REQUIRE(log->append(none).is_ok());
  CHECK(log->last_seq() == 4);
}

TEST_CASE("read pages with after and limit, and next resumes exactly") {
  temp_dir dir;
  auto log = open_log(dir.log());
  std::vector<protocol::event_record> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(rec("task.submitted", 100 + i, 1 + i, "p"));
  append(*log, batch);

  auto page = read(*log, after(0, 4));
  CHECK(seqs(page) == seq_list{1, 2, 3, 4});
  CHECK(page.next == 4);
  page = read(*log, after(page.next, 4));
  CHECK(seqs(page) == seq_list{5, 6, 7, 8});
  page = read(*log, after(page.next, 4));
  CHECK(seqs(page) == seq_list{9, 10});
  CHECK(page.next == 10);
  page = read(*log, after(page.next, 4));
  CHECK(page.events.empty());
  CHECK(page.next == 10);  // nothing examined: next stays at `after`

  // Past the end, and the largest possible cursor, are simply empty.
  page = read(*log, after(1000));
  CHECK(page.events.empty());
  CHECK(page.next == 1000);
  page = read(*log, after(std::numeric_limits<std::uint64_t>::max()));
  CHECK(page.events.empty());
  CHECK(read(*log, after(0, 0)).events.empty());
}

TEST_CASE("read filters by project and by kind prefix") {
  temp_dir dir;
  auto log = open_log(dir.log());
  append(*log, {
                   rec("task.submitted", 1, 1, "a"),   // 1
                   rec("task.submitted", 2, 2, "b"),   // 2
                   rec("worker.joined", 3, 0, "", "w"),  // 3
                   rec("task.completed", 4, 1, "a"),   // 4
                   rec("worker.lost", 5, 0, "", "w"),  // 5
                   rec("task.completed", 6, 2, "b"),   // 6
                   rec("project.paused", 7, 0, "a"),   // 7
               });

  auto q = after(0);
  q.project = "a";
  CHECK(seqs(read(*log, q)) == seq_list{1, 4, 7});

  q = after(0);
  q.kinds = {"task."};
  CHECK(seqs(read(*log, q)) == seq_list{1, 2, 4, 6});

  q = after(0);
  q.kinds = {"worker.lost", "task.completed"};
  CHECK(seqs(read(*log, q)) == seq_list{4, 5, 6});

  q = after(0);
  q.project = "b";
  q.kinds = {"task.completed"};
  const auto page = read(*log, q);
  CHECK(seqs(page) == seq_list{6});
  // Event 7 was examined and filtered out: resuming from it is right, and cheaper.
  CHECK(page.next == 7);

  // The empty prefix matches everything, like an empty ZeroMQ subscription.
  q = after(0);
  q.kinds = {""};
  CHECK(read(*log, q).events.size() == 7);

  q = after(0);
  q.project = "nobody";
  const auto empty = read(*log, q);
  CHECK(empty.events.empty());
  CHECK(empty.next == 7);
}

TEST_CASE("a read examines a bounded number of events and says where to continue") {
  temp_dir dir;
  auto log = open_log(dir.log());
  append(*log, common_then_rare());

  auto q = after(0);
  q.project = "rare";
  auto page = read(*log, q, 4);
  CHECK(page.events.empty());
  CHECK(page.next == 4);
  q.after = page.next;
  page = read(*log, q, 4);
  CHECK(page.events.empty());
  CHECK(page.next == 8);
  q.after = page.next;
  page = read(*log, q, 4);
  CHECK(seqs(page) == seq_list{10});
  CHECK(page.next == 10);
  q.after = page.next;
  page = read(*log, q, 4);
  CHECK(page.events.empty());
  CHECK(page.next == 10);  // no progress: the end
}

TEST_CASE("reopening keeps the events and continues the numbering") {
  temp_dir dir;
  {
    auto log = open_log(dir.log());
    append(*log, {rec("task.submitted", 1, 1, "p"), rec("task.assigned", 2, 1, "p", "w")});
  }
  {
    auto log = open_log(dir.log());
    CHECK(log->last_seq() == 2);
    std::vector<protocol::event_record> more = {rec("task.completed", 3, 1, "p", "w")};
    REQUIRE(log->append(more).is_ok());
    CHECK(more[0].seq == 3);
  }
  auto log = open_log(dir.log());
  CHECK(log->last_seq() == 3);
  const auto page = read(*log, after(0));
  CHECK(seqs(page) == seq_list{1, 2, 3});
  CHECK(page.events[0].kind == "task.submitted");
  CHECK(page.events[2].kind == "task.completed");
}

TEST_CASE("purge deletes old events oldest first in bounded steps, and numbering goes on") {
  temp_dir dir;
  auto log = open_log(dir.log());
  // One append per event: purge() deletes whole appends (records), so these are purged singly.
  for (int i = 0; i < 10; ++i) append(*log, {rec("task.submitted", 100 + i, 1 + i, "p")});
  // seq 1..10 at 100..109

  event_purge_result r;
  REQUIRE(log->purge(106, 4, r).is_ok());  // 6 are older than 106
  CHECK(r.removed == 4);
  CHECK(r.more);
  CHECK(seqs(read(*log, after(0))) == seq_list{5, 6, 7, 8, 9, 10});

  REQUIRE(log->purge(106, 4, r).is_ok());
  CHECK(r.removed == 2);
  CHECK_FALSE(r.more);
  const auto page = read(*log, after(0));
  CHECK(seqs(page) == seq_list{7, 8, 9, 10});
  CHECK(page.events.front().at == 106);  // the cut is exclusive

  REQUIRE(log->purge(106, 4, r).is_ok());
  CHECK(r.removed == 0);
  CHECK_FALSE(r.more);

  // Exactly max_items old events: nothing old is left, so no second call is asked for.
  REQUIRE(log->purge(110, 4, r).is_ok());
  CHECK(r.removed == 4);
  CHECK_FALSE(r.more);
  CHECK(read(*log, after(0)).events.empty());
  CHECK(log->last_seq() == 10);

  event_purge_result bad;
  CHECK(log->purge(110, 0, bad).error_code() == status::code::invalid_argument);

  // Seqs are never reused, not even after everything was purged and the log reopened.
  log.reset();
  log = open_log(dir.log());
  CHECK(log->last_seq() == 10);
  std::vector<protocol::event_record> next = {rec("task.submitted", 200, 11, "p")};
  REQUIRE(log->append(next).is_ok());
  CHECK(next[0].seq == 11);
  CHECK(seqs(read(*log, after(0))) == seq_list{11});
}

TEST_CASE("purge keeps events once it meets a newer one, and reads skip purged ones") {
  temp_dir dir;
  auto log = open_log(dir.log());
  // A wall clock stepped back: event 3 is older than event 2. One append (record) each.
  for (auto e : {rec("a", 10), rec("b", 50), rec("c", 20), rec("d", 60)}) append(*log, {e});
  event_purge_result r;
  REQUIRE(log->purge(40, 100, r).is_ok());
  CHECK(r.removed == 1);
  CHECK(seqs(read(*log, after(0))) == seq_list{2, 3, 4});
  REQUIRE(log->purge(55, 100, r).is_ok());
  CHECK(r.removed == 2);
  CHECK(seqs(read(*log, after(0))) == seq_list{4});
  CHECK(seqs(read(*log, after(1))) == seq_list{4});
}

TEST_CASE("open reports a path that is not a directory") {
  temp_dir dir;
  const auto file = dir.path() + "/file";
  std::ofstream(file) << "x";
  std::unique_ptr<event_log> log;
  const status s = event_log::open(file, log);
  CHECK_FALSE(s.is_ok());
  CHECK_THAT(s.to_string(), Contains(file));
  CHECK_FALSE(log);
  CHECK(event_log::open("", log).error_code() == status::code::invalid_argument);
}

TEST_CASE("one append is one record, keyed by the seq of its first event") {
  temp_dir dir;
  {
    auto log = open_log(dir.log());
    append(*log, {rec("task.submitted", 1, 1, "p"), rec("task.assigned", 1, 1, "p", "w"),
                  rec("task.completed", 2, 1, "p", "w")});
    append(*log, {rec("worker.joined", 3, 0, "", "w")});
    append(*log, {rec("task.submitted", 4, 2, "p"), rec("task.submitted", 4, 3, "p")});
  }
  raw_log raw(dir.log());
  const auto records = raw.records();
  REQUIRE(records.size() == 3);
  CHECK(records[0].first == be64(1));
  CHECK(records[1].first == be64(4));
  CHECK(records[2].first == be64(5));
  for (const auto& r : records) {
    REQUIRE_FALSE(r.second.empty());
    CHECK(r.second[0] == '\x02');  // the batch format, never the old single-event one
  }
}

TEST_CASE("a read can start in the middle of a batch and runs on across batches") {
  temp_dir dir;
  auto log = open_log(dir.log());
  const auto batch = [](std::uint64_t first, std::uint64_t count) {
    std::vector<protocol::event_record> out;
    for (std::uint64_t s = first; s < first + count; ++s)
      out.push_back(rec("task.submitted", static_cast<millis>(s), s, "p"));
    return out;
  };
  append(*log, batch(1, 5));  // 1..5
  append(*log, batch(6, 3));  // 6..8
  append(*log, batch(9, 4));  // 9..12

  for (std::uint64_t a = 0; a <= 12; ++a) {
    INFO("after " << a);
    const auto page = read(*log, after(a));
    CHECK(seqs(page) == range(a + 1, 12));
    CHECK(page.next == 12);
    for (const auto& e : page.events) CHECK(e.task == e.seq);  // each event's own fields
  }

  // Pages of 2 and of 3 cut the batches at every position, and next resumes exactly.
  for (std::uint32_t limit : {2u, 3u}) {
    INFO("limit " << limit);
    seq_list all;
    std::uint64_t next = 0;
    for (int calls = 0; calls < 20; ++calls) {
      const auto page = read(*log, after(next, limit));
      if (page.events.empty()) break;
      CHECK(page.events.size() <= limit);
      for (const auto& e : page.events) all.push_back(e.seq);
      next = page.next;
    }
    CHECK(all == range(1, 12));
  }
}

TEST_CASE("filters apply across batch boundaries") {
  temp_dir dir;
  auto log = open_log(dir.log());
  append(*log, {rec("task.submitted", 1, 1, "a"),    // 1
                rec("task.submitted", 1, 2, "b"),    // 2
                rec("task.assigned", 1, 1, "a", "w")});  // 3
  append(*log, {rec("task.assigned", 2, 2, "b", "w"),  // 4
                rec("worker.joined", 2, 0, "", "v")});  // 5
  append(*log, {rec("task.completed", 3, 1, "a", "w"),  // 6
                rec("task.completed", 3, 2, "b", "w"),  // 7
                rec("worker.lost", 3, 0, "", "v")});    // 8

  auto q = after(0, 2);
  q.project = "a";
  auto page = read(*log, q);
  CHECK(seqs(page) == seq_list{1, 3});
  CHECK(page.next == 3);
  q.after = page.next;
  page = read(*log, q);
  CHECK(seqs(page) == seq_list{6});
  CHECK(page.next == 8);  // examined to the end

  q = after(1);
  q.kinds = {"task.assigned", "worker."};
  CHECK(seqs(read(*log, q)) == seq_list{3, 4, 5, 8});

  q = after(4, 1);  // starts in the middle of the second batch
  q.project = "b";
  q.kinds = {"task.completed"};
  page = read(*log, q);
  CHECK(seqs(page) == seq_list{7});
  CHECK(page.next == 7);
}

TEST_CASE("max_examined counts events, inside a batch too, and not those before after") {
  temp_dir dir;
  auto log = open_log(dir.log());
  append(*log, common_then_rare());  // 1..10, one record
  append(*log, {rec("task.submitted", 10, 11, "rare"), rec("task.submitted", 10, 12, "common")});

  auto q = after(3);
  q.project = "rare";
  auto page = read(*log, q, 4);  // examines 4..7: 1..3 are stepped over, uncounted
  CHECK(page.events.empty());
  CHECK(page.next == 7);
  q.after = page.next;
  page = read(*log, q, 4);  // 8..11, across the batch boundary
  CHECK(seqs(page) == seq_list{10, 11});
  CHECK(page.next == 11);
  q.after = page.next;
  page = read(*log, q, 4);
  CHECK(page.events.empty());
  CHECK(page.next == 12);
  q.after = page.next;
  page = read(*log, q, 4);
  CHECK(page.events.empty());
  CHECK(page.next == 12);  // no progress: the end

  page = read(*log, after(0), 1);
  CHECK(seqs(page) == seq_list{1});
  CHECK(page.next == 1);
}

TEST_CASE("last_seq is recovered from the newest batch on reopen") {
  temp_dir dir;
  {
    auto log = open_log(dir.log());
    append(*log, {rec("a", 1), rec("b", 1), rec("c", 1)});
    append(*log, {rec("d", 2)});
    append(*log, {rec("e", 3), rec("f", 3), rec("g", 3), rec("h", 3)});
    CHECK(log->last_seq() == 8);
  }
  {
    auto log = open_log(dir.log());
    CHECK(log->last_seq() == 8);
    std::vector<protocol::event_record> more = {rec("i", 4), rec("j", 4)};
    REQUIRE(log->append(more).is_ok());
    CHECK(more[0].seq == 9);
    CHECK(more[1].seq == 10);
  }
  auto log = open_log(dir.log());
  CHECK(log->last_seq() == 10);
  const auto page = read(*log, after(0));
  CHECK(seqs(page) == range(1, 10));
  CHECK(page.events[9].kind == "j");
}

TEST_CASE("at and task keep their full range inside a batch") {
  temp_dir dir;
  const millis lowest = std::numeric_limits<millis>::min();
  const millis highest = std::numeric_limits<millis>::max();
  const task_id biggest = std::numeric_limits<task_id>::max();
  {
    auto log = open_log(dir.log());
    // `at` is stored as differences: jumps across the whole range, both ways.
    append(*log, {rec("a", 1'700'000'000'000, biggest), rec("b", lowest, 0), rec("c", highest, 1),
                  rec("d", -1, 2), rec("e", 0, 3), rec("f", lowest, 4)});
  }
  auto log = open_log(dir.log());
  const auto page = read(*log, after(0));
  REQUIRE(page.events.size() == 6);
  CHECK(page.events[0].at == 1'700'000'000'000);
  CHECK(page.events[0].task == biggest);
  CHECK(page.events[1].at == lowest);
  CHECK(page.events[2].at == highest);
  CHECK(page.events[3].at == -1);
  CHECK(page.events[4].at == 0);
  CHECK(page.events[5].at == lowest);
  CHECK(page.events[5].task == 4);
}

TEST_CASE("a batch larger than the reused buffers is stored whole, and later ones still are") {
  temp_dir dir;
  auto log = open_log(dir.log());
  const std::string big(3u << 20, 'x');
  append(*log, {rec("a", 1, 1, "p", "w", big), rec("b", 1, 2, "p", "w", big)});
  append(*log, {rec("c", 2, 3, "p")});
  const auto page = read(*log, after(1));
  REQUIRE(seqs(page) == seq_list{2, 3});
  CHECK(page.events[0].detail == big);
  CHECK(page.events[1].kind == "c");
}

TEST_CASE("purge deletes whole batches once all their events are old, and says when more are") {
  temp_dir dir;
  auto log = open_log(dir.log());
  append(*log, {rec("a", 10), rec("b", 11), rec("c", 12)});  // 1..3
  append(*log, {rec("d", 20), rec("e", 21)});                // 4..5
  append(*log, {rec("f", 30), rec("g", 31), rec("h", 32)});  // 6..8
  append(*log, {rec("i", 40)});                              // 9

  event_purge_result r;
  REQUIRE(log->purge(21, 10, r).is_ok());
  CHECK(r.removed == 3);  // events, not records
  CHECK(r.unreadable == 0);
  CHECK_FALSE(r.more);
  // Event 4 is older than the cut but stays with event 5 of its batch.
  auto page = read(*log, after(0));
  CHECK(seqs(page) == range(4, 9));
  CHECK(page.events.front().at == 20);
  CHECK(seqs(read(*log, after(1))) == range(4, 9));  // a cursor inside a purged batch

  // max_items counts records: one per call here, and `more` while old ones are left.
  REQUIRE(log->purge(35, 1, r).is_ok());
  CHECK(r.removed == 2);
  CHECK(r.more);
  REQUIRE(log->purge(35, 1, r).is_ok());
  CHECK(r.removed == 3);
  CHECK_FALSE(r.more);
  CHECK(seqs(read(*log, after(0))) == seq_list{9});
  CHECK(seqs(read(*log, after(5))) == seq_list{9});

  REQUIRE(log->purge(100, 1, r).is_ok());
  CHECK(r.removed == 1);
  CHECK_FALSE(r.more);
  CHECK(read(*log, after(0)).events.empty());
  CHECK(log->last_seq() == 9);

  log.reset();
  log = open_log(dir.log());
  CHECK(log->last_seq() == 9);
  std::vector<protocol::event_record> next = {rec("j", 200), rec("k", 200)};
  REQUIRE(log->append(next).is_ok());
  CHECK(next[0].seq == 10);
  CHECK(seqs(read(*log, after(0))) == seq_list{10, 11});
}

TEST_CASE("purge keeps a batch while any of its events is new, whatever their order") {
  temp_dir dir;
  auto log = open_log(dir.log());
  // A wall clock stepped back inside a batch: its last event is the older one.
  append(*log, {rec("a", 50), rec("b", 10)});
  event_purge_result r;
  REQUIRE(log->purge(40, 10, r).is_ok());
  CHECK(r.removed == 0);
  CHECK(seqs(read(*log, after(0))) == seq_list{1, 2});
  REQUIRE(log->purge(51, 10, r).is_ok());
  CHECK(r.removed == 2);
}

TEST_CASE("a store written one event per record by an earlier release is read, continued and "
          "purged") {
  temp_dir dir;
  {
    raw_log raw(dir.log());
    raw.put(1, single_event_value(rec("task.submitted", 10, 7, "alpha")));
    raw.put(2, single_event_value(rec("task.assigned", 20, 7, "alpha", "w1")));
    raw.put(3, single_event_value(
                   rec("task.failed", 30, 7, "alpha", "w1", std::string("boom\0\xff", 6))));
  }
  {
    auto log = open_log(dir.log());
    CHECK(log->last_seq() == 3);
    std::vector<protocol::event_record> batch = {rec("task.assigned", 40, 7, "alpha", "w2"),
                                                 rec("task.completed", 50, 7, "alpha", "w2")};
    REQUIRE(log->append(batch).is_ok());
    CHECK(batch[0].seq == 4);

    auto page = read(*log, after(0));
    REQUIRE(seqs(page) == range(1, 5));
    CHECK(page.events[0].kind == "task.submitted");
    CHECK(page.events[0].at == 10);
    CHECK(page.events[1].worker == "w1");
    CHECK(page.events[2].detail == std::string("boom\0\xff", 6));
    CHECK(page.events[2].task == 7);
    CHECK(page.events[3].worker == "w2");

    CHECK(seqs(read(*log, after(2, 2))) == seq_list{3, 4});
    auto q = after(0);
    q.kinds = {"task.assigned"};
    CHECK(seqs(read(*log, q)) == seq_list{2, 4});
    page = read(*log, after(0), 2);
    CHECK(page.next == 2);
  }
  {
    // A record of the old format as the newest one: last_seq comes from its key.
    raw_log raw(dir.log());
    raw.put(6, single_event_value(rec("worker.lost", 60, 0, "", "w1")));
  }
  auto log = open_log(dir.log());
  CHECK(log->last_seq() == 6);
  CHECK(seqs(read(*log, after(4))) == seq_list{5, 6});

  event_purge_result r;
  REQUIRE(log->purge(25, 10, r).is_ok());  // the old records 1 and 2
  CHECK(r.removed == 2);
  CHECK_FALSE(r.more);
  REQUIRE(log->purge(55, 1, r).is_ok());  // old record 3
  CHECK(r.removed == 1);
  CHECK(r.more);
  REQUIRE(log->purge(55, 1, r).is_ok());  // the batch 4..5
  CHECK(r.removed == 2);
  CHECK_FALSE(r.more);
  CHECK(r.unreadable == 0);
  CHECK(seqs(read(*log, after(0))) == seq_list{6});
}

TEST_CASE("damaged records fail the reads that reach them and purge deletes and counts them") {
  // Each is the value of the record at seq 4, between two good batches.
  // One event of the batch format: at 10, task 1, kind "k", the other texts empty.
  const std::string event = std::string("\x14\x01\x01k\x00\x00\x00", 7);
  const std::vector<std::string> damaged = {
      std::string(),                                  // empty
      std::string("\x07\x01\x00\x00\x00\x00\x00\x00", 8),  // unknown format
      std::string("\x02\x00", 2),                     // a batch of no events
      std::string("\x02\x03\x01", 3),                 // cut short
      std::string("\x02\x02") + event,               // says two, holds one
      std::string("\x02\x01") + event + "x",         // a byte past the end
      std::string("\x02\x01") + std::string(11, '\xff'),  // a varint past 64 bits
      std::string("\x02\x01\x00\x00\x7f", 5),         // a text longer than the value
      std::string("\x01\x00\x00", 3),                 // the old format, cut short
  };
  for (std::size_t i = 0; i < damaged.size(); ++i) {
    INFO("damaged value " << i);
    temp_dir dir;
    {
      auto log = open_log(dir.log());
      append(*log, {rec("a", 10), rec("b", 11), rec("c", 12)});  // 1..3
    }
    {
      raw_log raw(dir.log());
      raw.put(4, damaged[i]);
    }
    auto log = open_log(dir.log());  // a damaged newest record does not stop open()
    CHECK(log->last_seq() >= 4);
    const std::uint64_t before = log->last_seq();
    std::vector<protocol::event_record> batch = {rec("d", 50), rec("e", 51)};
    REQUIRE(log->append(batch).is_ok());
    CHECK(batch[0].seq == before + 1);  // no seq the damaged record may hold is reused

    protocol::event_list out;
    status s = log->read(after(0), out);
    CHECK(s.error_code() == status::code::corruption);
    CHECK_THAT(s.to_string(), Contains("from 4"));
    CHECK(seqs(read(*log, after(0, 3))) == seq_list{1, 2, 3});  // stops short of it
    CHECK(seqs(read(*log, after(before))) == seq_list{before + 1, before + 2});
    CHECK(log->read(after(3), out).error_code() == status::code::corruption);

    event_purge_result r;
    REQUIRE(log->purge(20, 100, r).is_ok());
    CHECK(r.removed == 4);  // three events and the damaged record
    CHECK(r.unreadable == 1);
    CHECK_FALSE(r.more);
    CHECK(seqs(read(*log, after(0))) == seq_list{before + 1, before + 2});
    log.reset();
    log = open_log(dir.log());
    CHECK(log->last_seq() == before + 2);
  }
}

TEST_CASE("purging a damaged record keeps the records right after it and never lowers the count") {
  temp_dir dir;
  {
    auto log = open_log(dir.log());
    append(*log, {rec("a", 10), rec("b", 11), rec("c", 12)});  // 1..3
  }
  {
    raw_log raw(dir.log());
    // Damaged, and long: its size would allow seqs up to 4 + 39, past the records that follow.
    raw.put(4, std::string("\x02\x03") + std::string(38, '\xff'));
    raw.put(5, single_event_value(rec("d", 15)));
    raw.put(6, single_event_value(rec("e", 100)));
  }
  auto log = open_log(dir.log());
  CHECK(log->last_seq() == 6);  // the newest record is whole: exact
  event_purge_result r;
  REQUIRE(log->purge(20, 100, r).is_ok());
  CHECK(r.removed == 5);
  CHECK(r.unreadable == 1);
  CHECK(seqs(read(*log, after(0))) == seq_list{6});
  CHECK(seqs(read(*log, after(4))) == seq_list{6});
  log.reset();
  log = open_log(dir.log());
  CHECK(log->last_seq() == 6);
  CHECK(seqs(read(*log, after(0))) == seq_list{6});

  // A damaged newest record, purged away: numbering goes on after the most it could hold, also
  // across a reopen of the emptied log.
  log.reset();
  {
    raw_log raw(dir.log());
    raw.put(7, std::string("\x02\x03") + std::string(8, '\xff'));
  }
  log = open_log(dir.log());
  const std::uint64_t bound = log->last_seq();
  CHECK(bound >= 7);
  REQUIRE(log->purge(1000, 100, r).is_ok());
  CHECK(r.removed == 2);
  CHECK(r.unreadable == 1);
  CHECK(read(*log, after(0)).events.empty());
  log.reset();
  log = open_log(dir.log());
  CHECK(log->last_seq() == bound);
  std::vector<protocol::event_record> next = {rec("f", 2000)};
  REQUIRE(log->append(next).is_ok());
  CHECK(next[0].seq == bound + 1);
  CHECK(seqs(read(*log, after(0))) == seq_list{bound + 1});
}
