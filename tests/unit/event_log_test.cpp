// event_log against a real RocksDB, one fresh directory per test.
#include <catch2/catch.hpp>

#include "tests/support/temp_dir.hpp"

#include <stdlib.h>  // mkdtemp

#include <filesystem>
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
  std::vector<protocol::event_record> batch;
  for (int i = 0; i < 9; ++i) batch.push_back(rec("task.submitted", i, 1 + i, "common"));
  batch.push_back(rec("task.submitted", 9, 10, "rare"));
  append(*log, batch);

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
  std::vector<protocol::event_record> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(rec("task.submitted", 100 + i, 1 + i, "p"));
  append(*log, batch);  // seq 1..10 at 100..109

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
  // A wall clock stepped back: event 3 is older than event 2.
  append(*log, {rec("a", 10), rec("b", 50), rec("c", 20), rec("d", 60)});
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
