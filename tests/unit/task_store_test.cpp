// task_store against a real RocksDB, one fresh directory per test.
#include <catch2/catch.hpp>

#include "tests/support/temp_dir.hpp"
#include "tests/support/thread_cpus.hpp"

#include <fcntl.h>         // open
#include <rocksdb/db.h>
#include <signal.h>        // sigaction
#include <stdlib.h>        // mkdtemp, getenv
#include <sys/resource.h>  // setrlimit
#include <sys/wait.h>      // waitpid
#include <unistd.h>        // fork, execve

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "persistence/task_store.hpp"
#include "protocol/codec.hpp"
#include "protocol/records.hpp"
#include "protocol/wire_writer.hpp"

extern char** environ;  // POSIX: the environment execve() passes on

namespace fs = std::filesystem;
using namespace dispatch;
using namespace dispatch::persistence;
using Catch::Matchers::Contains;

namespace {

// A scratch directory; the store lives in a subdirectory, so open() also exercises creating it.
class temp_dir : public dispatch::testing::temp_dir {
 public:
  temp_dir() : dispatch::testing::temp_dir("task_store_test") {}
  std::string store() const { return path() + "/store"; }
};

std::unique_ptr<task_store> open_store(const std::string& dir, durability mode = durability::wal) {
  std::unique_ptr<task_store> s;
  const status st = task_store::open(store_options{dir, mode, {}}, s);
  INFO(st.to_string());
  REQUIRE(st.is_ok());
  REQUIRE(s != nullptr);
  return s;
}

recovered_state recover(task_store& s) {
  recovered_state r;
  const status st = s.recover(r);
  INFO(st.to_string());
  REQUIRE(st.is_ok());
  return r;
}

void apply(task_store& s, const write_batch& b) {
  const status st = s.apply(b);
  INFO(st.to_string());
  REQUIRE(st.is_ok());
}

task make_task(task_id id, const std::string& project, task_status st = task_status::pending) {
  task t;
  t.id = id;
  t.project = project;
  t.type = "resize";
  t.priority = 5;
  t.payload = "payload-" + std::to_string(id);
  t.status = st;
  t.created_at = 1'700'000'000'000 + static_cast<millis>(id);
  return t;
}

void require_same(const task& a, const task& b) {
  REQUIRE(a.id == b.id);
  REQUIRE(a.project == b.project);
  REQUIRE(a.type == b.type);
  REQUIRE(a.priority == b.priority);
  REQUIRE(a.payload == b.payload);
  REQUIRE(a.tags == b.tags);
  REQUIRE(a.status == b.status);
  REQUIRE(a.attempts == b.attempts);
  REQUIRE(a.max_attempts == b.max_attempts);
  REQUIRE(a.timeout_ms == b.timeout_ms);
  REQUIRE(a.run_at == b.run_at);
  REQUIRE(a.deadline == b.deadline);
  REQUIRE(a.overdue == b.overdue);
  REQUIRE(a.idempotency_key == b.idempotency_key);
  REQUIRE(a.lease_expires_at == b.lease_expires_at);
  REQUIRE(a.worker == b.worker);
  REQUIRE(a.created_at == b.created_at);
  REQUIRE(a.assigned_at == b.assigned_at);
  REQUIRE(a.finished_at == b.finished_at);
  REQUIRE(a.result == b.result);
  REQUIRE(a.error == b.error);
}

std::vector<task_id> ids(const std::vector<task>& tasks) {
  std::vector<task_id> out;
  for (const auto& t : tasks) out.push_back(t.id);
  return out;
}

status_counts make_counts(std::uint64_t pending, std::uint64_t running, std::uint64_t completed,
                          std::uint64_t failed, std::uint64_t dead, std::uint64_t cancelled,
                          std::uint64_t scheduled = 0) {
  return {pending, running, completed, failed, dead, cancelled, scheduled};
}

// Moves `t` to `to` in its own batch, as the persistence actor would.
void transition(task_store& s, task& t, task_status to) {
  write_batch b;
  const task_status from = t.status;
  t.status = to;
  b.put_task(t, from);
  apply(s, b);
}

// The filters the first queries had: project, status and a limit.
task_filter filter_of(std::optional<std::string> project, std::optional<task_status> status,
                      std::uint32_t limit) {
  task_filter f;
  f.project = std::move(project);
  f.status = status;
  f.limit = limit;
  return f;
}

std::vector<task> list(task_store& s, const task_filter& f) {
  std::vector<task> out;
  task_id next = 0;
  const status st = s.list(f, out, next);
  INFO(st.to_string());
  REQUIRE(st.is_ok());
  return out;
}

std::optional<task_id> find_key(task_store& s, const std::string& project,
                                const std::string& key, millis not_before) {
  std::optional<task_id> out;
  const status st = s.find_idempotent(project, key, not_before, out);
  INFO(st.to_string());
  REQUIRE(st.is_ok());
  return out;
}

// One retention step as the dispatcher takes it, but unsliced: find_expired() from `cursor`,
// then purge() of everything found.
struct purge_step {
  std::size_t examined = 0, tasks_removed = 0, keys_removed = 0, unreadable = 0;
  bool more = false;
  std::map<std::string, status_counts> removed;
};

purge_step purge(task_store& s, purge_cursor& cursor, millis finished_before, millis keys_before,
                 std::size_t max_items) {
  expired_entries found;
  status st = s.find_expired(finished_before, keys_before, max_items, cursor, found);
  INFO(st.to_string());
  REQUIRE(st.is_ok());
  purge_result r;
  st = s.purge(found, finished_before, keys_before, r);
  INFO(st.to_string());
  REQUIRE(st.is_ok());
  return {found.examined, r.tasks_removed(), r.keys_removed, r.unreadable, found.more, r.removed};
}

task finished_task(task_id id, const std::string& project, task_status st, millis finished_at) {
  task t = make_task(id, project, st);
  t.finished_at = finished_at;
  return t;
}

// Writes raw records into a store with RocksDB itself, bypassing task_store: a store in the
// layout of an older release, or records task_store would never write.
class raw_store_writer {
 public:
  // The column families of the release before "idempotency", in its order; with_idempotency
  // adds that one as the release before "index" had it, with_index that one too.
  static constexpr std::size_t live = 1, done = 2, meta = 3, idempotency = 5, index = 6;

  raw_store_writer(const std::string& dir, bool with_idempotency, bool with_index = false) {
    std::vector<std::string> names = {"default", "live", "done", "meta", "projects"};
    if (with_idempotency) names.push_back("idempotency");
    if (with_index) names.push_back("index");
    rocksdb::DBOptions options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const auto& n : names) families.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    const auto s = rocksdb::DB::Open(options, dir, families, &handles, &db);
    INFO(s.ToString());
    REQUIRE(s.ok());
    db_.reset(db);
    for (auto* h : handles) handles_.emplace_back(h);
  }
  ~raw_store_writer() {
    handles_.clear();  // column family handles go before their database
    db_.reset();
  }
  raw_store_writer(const raw_store_writer&) = delete;
  raw_store_writer& operator=(const raw_store_writer&) = delete;

  void put(std::size_t cf, const std::string& key, const std::string& value) {
    const auto s = db_->Put(rocksdb::WriteOptions(), handles_.at(cf).get(), key, value);
    INFO(s.ToString());
    REQUIRE(s.ok());
  }
  void remove(std::size_t cf, const std::string& key) {
    const auto s = db_->Delete(rocksdb::WriteOptions(), handles_.at(cf).get(), key);
    INFO(s.ToString());
    REQUIRE(s.ok());
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<std::unique_ptr<rocksdb::ColumnFamilyHandle>> handles_;
};

// A closed store opened read-only with RocksDB itself, every column family: what task_store
// wrote, seen without task_store.
class raw_store_reader {
 public:
  explicit raw_store_reader(const std::string& dir) {
    REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names_).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const auto& n : names_) families.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    const auto s = rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, families, &handles, &db);
    INFO(s.ToString());
    REQUIRE(s.ok());
    db_.reset(db);
    for (auto* h : handles) handles_.emplace_back(h);
  }
  ~raw_store_reader() { handles_.clear(); }  // column family handles go before their database
  raw_store_reader(const raw_store_reader&) = delete;
  raw_store_reader& operator=(const raw_store_reader&) = delete;

  const std::vector<std::string>& names() const { return names_; }
  rocksdb::DB& db() { return *db_; }
  rocksdb::ColumnFamilyHandle* cf(const std::string& name) {
    const auto at = std::find(names_.begin(), names_.end(), name);
    REQUIRE(at != names_.end());
    return handles_[static_cast<std::size_t>(at - names_.begin())].get();
  }

 private:
  std::vector<std::string> names_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<std::unique_ptr<rocksdb::ColumnFamilyHandle>> handles_;
};

// Every key and value of every column family of a closed store: column family name -> (key,
// value) pairs in key order.
std::map<std::string, std::vector<std::pair<std::string, std::string>>> raw_contents(
    const std::string& dir) {
  raw_store_reader raw(dir);
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> out;
  for (const auto& name : raw.names()) {
    auto& entries = out[name];
    std::unique_ptr<rocksdb::Iterator> it(
        raw.db().NewIterator(rocksdb::ReadOptions(), raw.cf(name)));
    for (it->SeekToFirst(); it->Valid(); it->Next())
      entries.emplace_back(it->key().ToString(), it->value().ToString());
    REQUIRE(it->status().ok());
  }
  return out;
}

std::vector<std::string> raw_index_keys(const std::string& dir) {
  const auto contents = raw_contents(dir);
  const auto index = contents.find("index");
  REQUIRE(index != contents.end());
  std::vector<std::string> keys;
  for (const auto& entry : index->second) keys.push_back(entry.first);
  return keys;
}

std::string be64(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8)
    out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
  return out;
}

// A task record as releases before the positional form stored it: the wire's named task map.
std::string version1_record(const task& t) {
  std::string out;
  protocol::wire::writer w(out);
  protocol::records::write_task(w, t);
  return out;
}

std::string le64s(std::initializer_list<std::uint64_t> values) {
  std::string out;
  for (std::uint64_t v : values)
    for (int i = 0; i < 8; ++i, v >>= 8) out.push_back(static_cast<char>(v & 0xff));
  return out;
}

// The child of the write failure test finds its store directory here.
constexpr const char* write_failure_dir_env = "TASK_STORE_TEST_WRITE_FAILURE_DIR";
constexpr const char* write_failure_child_name = "write failure child";

}  // namespace

TEST_CASE("insert and recover round-trips every field", "[task_store]") {
  temp_dir tmp;
  task full;
  full.id = 7;
  full.project = "images";
  full.type = "thumbnail";
  full.priority = -3;
  full.payload = std::string("bin\0ary\xff", 8);
  full.tags = {"gpu", "eu-west"};
  full.status = task_status::running;
  full.attempts = 2;
  full.max_attempts = 5;
  full.timeout_ms = 45'000;
  full.run_at = 1'700'000'000'100;
  full.deadline = 1'700'000'900'000;
  full.overdue = true;
  full.idempotency_key = "order-7";
  full.lease_expires_at = 1'700'000'045'456;
  full.worker = "worker-12";
  full.created_at = 1'700'000'000'123;
  full.assigned_at = 1'700'000'000'456;
  full.finished_at = 0;
  full.result = "";
  full.error = "timeout on attempt 1";
  const task plain = make_task(3, "images");

  {
    auto store = open_store(tmp.store());
    write_batch b;
    b.put_task(full, std::nullopt);
    b.put_task(plain, std::nullopt);
    b.set_last_id(7);
    REQUIRE(b.size() == 3);
    apply(*store, b);
  }
  auto store = open_store(tmp.store());
  const auto r = recover(*store);
  REQUIRE(r.live.size() == 2);
  require_same(r.live[0], plain);  // id order, not insertion order
  require_same(r.live[1], full);
  REQUIRE(r.last_id == 7);
}

TEST_CASE("status changes move tasks between live and done", "[task_store]") {
  temp_dir tmp;
  task a = make_task(1, "p"), b = make_task(2, "p"), c = make_task(3, "p");
  {
    auto store = open_store(tmp.store());
    write_batch batch;
    for (const task* t : {&a, &b, &c}) batch.put_task(*t, std::nullopt);
    apply(*store, batch);

    transition(*store, a, task_status::running);
    transition(*store, a, task_status::completed);
    transition(*store, b, task_status::cancelled);
    REQUIRE(ids(recover(*store).live) == std::vector<task_id>{3});

    task got;
    REQUIRE(store->get(1, got).is_ok());
    REQUIRE(got.status == task_status::completed);
    REQUIRE(ids(list(*store, filter_of(std::nullopt, task_status::completed, 100))) ==
            std::vector<task_id>{1});

    // A later admin retry brings a finished task back to the live set.
    transition(*store, a, task_status::pending);
  }
  auto store = open_store(tmp.store());
  const auto r = recover(*store);
  REQUIRE(ids(r.live) == std::vector<task_id>{1, 3});
  REQUIRE(r.live[0].status == task_status::pending);
  // Gone from "done": no stale completed copy left behind.
  REQUIRE(list(*store, filter_of(std::nullopt, task_status::completed, 100)).empty());
  REQUIRE(ids(list(*store, filter_of(std::nullopt, task_status::cancelled, 100))) ==
          std::vector<task_id>{2});
  REQUIRE(ids(list(*store, {})) == std::vector<task_id>{3, 2, 1});
}

TEST_CASE("counts follow transitions and survive reopen", "[task_store]") {
  temp_dir tmp;
  {
    auto store = open_store(tmp.store());
    REQUIRE(store->counts().empty());
    task a1 = make_task(1, "a"), a2 = make_task(2, "a"), a3 = make_task(3, "a");
    task b1 = make_task(4, "b");
    write_batch batch;
    for (const task* t : {&a1, &a2, &a3, &b1}) batch.put_task(*t, std::nullopt);
    apply(*store, batch);
    REQUIRE(store->counts().at("a") == make_counts(3, 0, 0, 0, 0, 0));
    REQUIRE(store->counts().at("b") == make_counts(1, 0, 0, 0, 0, 0));

    transition(*store, a1, task_status::running);
    transition(*store, a1, task_status::completed);
    transition(*store, a2, task_status::running);
    transition(*store, a2, task_status::dead);
    transition(*store, b1, task_status::cancelled);
    REQUIRE(store->counts().at("a") == make_counts(1, 0, 1, 0, 1, 0));
    REQUIRE(store->counts().at("b") == make_counts(0, 0, 0, 0, 0, 1));

    // A wrong `previous` (nothing is failed) clamps at zero instead of wrapping around.
    task wrong = a3;
    wrong.status = task_status::running;
    write_batch w;
    w.put_task(wrong, task_status::failed);
    apply(*store, w);
    REQUIRE(store->counts().at("a") == make_counts(1, 1, 1, 0, 1, 0));
  }
  auto store = open_store(tmp.store());
  const auto expected_a = make_counts(1, 1, 1, 0, 1, 0);
  const auto expected_b = make_counts(0, 0, 0, 0, 0, 1);
  REQUIRE(store->counts().size() == 2);
  REQUIRE(store->counts().at("a") == expected_a);
  REQUIRE(store->counts().at("b") == expected_b);
  const auto r = recover(*store);
  REQUIRE(r.counts.size() == 2);
  REQUIRE(r.counts.at("a") == expected_a);
  REQUIRE(r.counts.at("b") == expected_b);
}

TEST_CASE("a rejected batch writes nothing and leaves counts alone", "[task_store]") {
  temp_dir tmp;
  auto store = open_store(tmp.store());
  task bad = make_task(2, "p");
  bad.status = static_cast<task_status>(9);
  write_batch b;
  b.put_task(make_task(1, "p"), std::nullopt);
  b.put_task(bad, std::nullopt);
  b.set_last_id(2);
  const status st = store->apply(b);
  REQUIRE(st.error_code() == status::code::invalid_argument);
  REQUIRE_THAT(st.message(), Contains("task 2"));
  REQUIRE(store->counts().empty());
  const auto r = recover(*store);
  REQUIRE(r.live.empty());
  REQUIRE(r.last_id == 0);
  task got;
  REQUIRE(store->get(1, got).is_not_found());

  // An unknown status in the middle of a task's chain of changes is not folded away unseen.
  write_batch chain;
  chain.put_task(bad, std::nullopt);
  task then = bad;
  then.status = task_status::completed;
  chain.put_task(then, bad.status);
  REQUIRE(store->apply(chain).error_code() == status::code::invalid_argument);
  REQUIRE(store->counts().empty());
}

TEST_CASE("last id survives reopen", "[task_store]") {
  temp_dir tmp;
  {
    auto store = open_store(tmp.store());
    REQUIRE(recover(*store).last_id == 0);  // fresh store
    write_batch b;
    b.set_last_id(41);
    apply(*store, b);
    b.clear();
    REQUIRE(b.empty());
    b.set_last_id(0x0102030405060708ull);  // every byte distinct: catches byte-order slips
    apply(*store, b);
  }
  auto store = open_store(tmp.store());
  REQUIRE(recover(*store).last_id == 0x0102030405060708ull);
}

TEST_CASE("recovery gives the latest creation time of the live and the finished tasks",
          "[task_store]") {
  temp_dir tmp;
  auto store = open_store(tmp.store());
  REQUIRE(recover(*store).last_created_at == 0);  // fresh store
  write_batch b;
  b.put_task(make_task(1, "p"), std::nullopt);
  b.put_task(make_task(2, "p"), std::nullopt);
  apply(*store, b);
  REQUIRE(recover(*store).last_created_at == make_task(2, "p").created_at);
  // The newest task finished: its time is found on the finished side.
  b.clear();
  task finished = make_task(2, "p", task_status::completed);
  finished.finished_at = finished.created_at + 10;
  b.put_task(finished, task_status::pending);
  apply(*store, b);
  REQUIRE(recover(*store).last_created_at == finished.created_at);
  // Gone for good: the time of what remains.
  b.clear();
  b.remove_task(finished);
  apply(*store, b);
  REQUIRE(recover(*store).last_created_at == make_task(1, "p").created_at);
}

TEST_CASE("project settings round-trip", "[task_store]") {
  temp_dir tmp;
  {
    auto store = open_store(tmp.store());
    write_batch b;
    b.put_project("images", project_settings{true, 8, 3});
    b.put_project("mail", project_settings{false, 0, 1});
    apply(*store, b);
    write_batch update;
    update.put_project("mail", project_settings{false, 70000, 250});
    apply(*store, update);
  }
  auto store = open_store(tmp.store());
  const auto r = recover(*store);
  REQUIRE(r.projects.size() == 2);
  REQUIRE(r.projects.at("images").paused == true);
  REQUIRE(r.projects.at("images").max_inflight == 8);
  REQUIRE(r.projects.at("images").weight == 3);
  REQUIRE(r.projects.at("mail").paused == false);
  REQUIRE(r.projects.at("mail").max_inflight == 70000);
  REQUIRE(r.projects.at("mail").weight == 250);
}

TEST_CASE("get finds live and finished tasks, not_found otherwise", "[task_store]") {
  temp_dir tmp;
  auto store = open_store(tmp.store());
  task live = make_task(10, "p", task_status::running);
  task done = make_task(11, "p");
  write_batch b;
  b.put_task(live, std::nullopt);
  b.put_task(done, std::nullopt);
  apply(*store, b);
  done.result = "42 thumbnails";
  done.finished_at = 1'700'000'001'000;
  transition(*store, done, task_status::completed);

  task got;
  REQUIRE(store->get(10, got).is_ok());
  require_same(got, live);
  REQUIRE(store->get(11, got).is_ok());
  require_same(got, done);
  const status missing = store->get(12, got);
  REQUIRE(missing.is_not_found());
  REQUIRE_THAT(missing.message(), Contains("12"));
  REQUIRE(got.id == 11);  // untouched on failure
}

TEST_CASE("get_unfinished reads several unfinished tasks in the order asked", "[task_store]") {
  temp_dir tmp;
  auto store = open_store(tmp.store());
  write_batch b;
  std::vector<task> written;
  for (task_id id = 1; id <= 5; ++id) {
    written.push_back(make_task(id, "p", id == 3 ? task_status::running : task_status::pending));
    b.put_task(written.back(), std::nullopt);
  }
  apply(*store, b);
  task finished = written[3];  // id 4
  finished.finished_at = 1'700'000'001'000;
  transition(*store, finished, task_status::completed);

  std::vector<task> got;
  REQUIRE(store->get_unfinished({5, 1, 3}, got).is_ok());
  REQUIRE(got.size() == 3);
  require_same(got[0], written[4]);
  require_same(got[1], written[0]);
  require_same(got[2], written[2]);

  // A finished task is not unfinished, a missing one neither: both name the id.
  for (task_id absent : {task_id{4}, task_id{9}}) {
    const status s = store->get_unfinished({1, absent, 2}, got);
    REQUIRE(s.is_not_found());
    REQUIRE_THAT(s.message(), Contains(std::to_string(absent)));
  }
}

TEST_CASE("list returns newest first with project and status filters and a limit",
          "[task_store]") {
  temp_dir tmp;
  auto store = open_store(tmp.store());
  // ids 1..10: odd in project a, even in b; statuses interleave live and done.
  const task_status st[] = {task_status::pending,   task_status::completed, task_status::running,
                            task_status::failed,    task_status::pending,   task_status::dead,
                            task_status::completed, task_status::running,   task_status::cancelled,
                            task_status::pending};
  write_batch b;
  for (task_id id = 1; id <= 10; ++id) {
    task t = make_task(id, id % 2 == 1 ? "a" : "b", st[id - 1]);
    b.put_task(t, std::nullopt);
  }
  apply(*store, b);

  using v = std::vector<task_id>;
  REQUIRE(ids(list(*store, {})) == v{10, 9, 8, 7, 6, 5, 4, 3, 2, 1});
  REQUIRE(ids(list(*store, filter_of(std::nullopt, std::nullopt, 3))) == v{10, 9, 8});
  REQUIRE(ids(list(*store, filter_of("a", std::nullopt, 100))) == v{9, 7, 5, 3, 1});
  REQUIRE(ids(list(*store, filter_of("b", std::nullopt, 2))) == v{10, 8});
  REQUIRE(ids(list(*store, filter_of(std::nullopt, task_status::pending, 100))) == v{10, 5, 1});
  REQUIRE(ids(list(*store, filter_of(std::nullopt, task_status::running, 100))) == v{8, 3});
  REQUIRE(ids(list(*store, filter_of(std::nullopt, task_status::completed, 100))) == v{7, 2});
  REQUIRE(ids(list(*store, filter_of("a", task_status::completed, 100))) == v{7});
  REQUIRE(ids(list(*store, filter_of("b", task_status::pending, 1))) == v{10});
  REQUIRE(list(*store, filter_of("c", std::nullopt, 100)).empty());
  REQUIRE(list(*store, filter_of(std::nullopt, std::nullopt, 0)).empty());
  const auto newest = list(*store, filter_of(std::nullopt, std::nullopt, 1));
  REQUIRE(newest.size() == 1);
  require_same(newest[0], make_task(10, "b", task_status::pending));
}

TEST_CASE("opening the same directory twice fails and names it", "[task_store]") {
  temp_dir tmp;
  auto first = open_store(tmp.store());
  std::unique_ptr<task_store> second;
  const status st = task_store::open(store_options{tmp.store(), durability::wal, {}}, second);
  REQUIRE_FALSE(st.is_ok());
  REQUIRE(second == nullptr);
  REQUIRE_THAT(st.message(), Contains("cannot open store in " + tmp.store()));
  REQUIRE_THAT(st.message(), Contains("LOCK"));
  // The first instance is unaffected.
  write_batch b;
  b.set_last_id(5);
  apply(*first, b);
  REQUIRE(recover(*first).last_id == 5);
}

TEST_CASE("opening an unusable path fails with a clear message", "[task_store]") {
  temp_dir tmp;
  const std::string file = tmp.path() + "/plain-file";
  std::ofstream(file) << "not a store";
  std::unique_ptr<task_store> s;

  SECTION("the path is a regular file") {
    const status st = task_store::open(store_options{file, durability::wal, {}}, s);
    REQUIRE(st.error_code() == status::code::io_error);
    REQUIRE(st.message() == "cannot open store in " + file + ": the path exists and is not a directory");
  }
  SECTION("the path is under a regular file") {
    const std::string dir = file + "/store";
    const status st = task_store::open(store_options{dir, durability::wal, {}}, s);
    REQUIRE(st.error_code() == status::code::io_error);
    REQUIRE_THAT(st.message(), Contains("cannot open store in " + dir + ": cannot create the directory"));
  }
  SECTION("the path is under a location nobody can write to") {
    // /proc refuses new directories even to root, so this holds however the tests run.
    const std::string dir = "/proc/dispatch-task-store-test/store";
    const status st = task_store::open(store_options{dir, durability::wal, {}}, s);
    REQUIRE(st.error_code() == status::code::io_error);
    REQUIRE_THAT(st.message(), Contains("cannot open store in " + dir + ": cannot create the directory"));
  }
  SECTION("no directory at all") {
    const status st = task_store::open(store_options{"", durability::wal, {}}, s);
    REQUIRE(st.error_code() == status::code::invalid_argument);
  }
  REQUIRE(s == nullptr);
}

TEST_CASE("fsync mode writes durably", "[task_store]") {
  temp_dir tmp;
  {
    auto store = open_store(tmp.store(), durability::fsync);
    write_batch b;
    b.put_task(make_task(1, "p"), std::nullopt);
    b.set_last_id(1);
    apply(*store, b);
    task t = make_task(1, "p");
    transition(*store, t, task_status::running);
  }
  auto store = open_store(tmp.store(), durability::fsync);
  const auto r = recover(*store);
  REQUIRE(ids(r.live) == std::vector<task_id>{1});
  REQUIRE(r.live[0].status == task_status::running);
  REQUIRE(r.last_id == 1);
  REQUIRE(r.counts.at("p") == make_counts(0, 1, 0, 0, 0, 0));
}

TEST_CASE("try_apply writes a batch as apply does when nothing stands in the way",
          "[task_store]") {
  temp_dir tmp;
  {
    auto store = open_store(tmp.store());
    write_batch b;
    b.put_task(make_task(1, "p"), std::nullopt);
    b.put_idempotency("p", "k", 1, 5);
    b.set_last_id(1);
    bool applied = false;
    REQUIRE(store->try_apply(b, applied).is_ok());
    REQUIRE(applied);
    REQUIRE(store->counts().at("p") == make_counts(1, 0, 0, 0, 0, 0));
    task bad = make_task(2, "p");
    bad.status = static_cast<task_status>(9);
    write_batch rejected;
    rejected.put_task(bad, std::nullopt);
    REQUIRE(store->try_apply(rejected, applied).error_code() == status::code::invalid_argument);
    REQUIRE_FALSE(applied);
  }
  auto store = open_store(tmp.store());
  const auto r = recover(*store);
  REQUIRE(ids(r.live) == std::vector<task_id>{1});
  REQUIRE(r.last_id == 1);
  REQUIRE(find_key(*store, "p", "k", 0) == task_id{1});
}

TEST_CASE("try_apply leaves an fsync store's writes to apply", "[task_store]") {
  temp_dir tmp;
  auto store = open_store(tmp.store(), durability::fsync);
  write_batch b;
  b.put_task(make_task(1, "p"), std::nullopt);
  bool applied = true;
  REQUIRE(store->try_apply(b, applied).is_ok());
  REQUIRE_FALSE(applied);
  REQUIRE(store->counts().empty());
  task got;
  REQUIRE(store->get(1, got).is_not_found());
}

TEST_CASE("writes from two threads at once each land once with their counts",
          "[task_store]") {
  // One thread applies, the other tries first and falls back to apply as the dispatcher does.
  // Counts are staged from the published ones, so two writes staged at once would lose one's.
  temp_dir tmp;
  auto store = open_store(tmp.store());
  constexpr task_id per_thread = 2000;
  std::size_t tried = 0, fell_back = 0;
  status a_failed, b_failed;
  std::thread waiting([&] {
    for (task_id id = 1; id <= per_thread && a_failed.is_ok(); ++id) {
      write_batch b;
      b.put_task(make_task(id, "p"), std::nullopt);
      a_failed = store->apply(b);
    }
  });
  for (task_id id = per_thread + 1; id <= 2 * per_thread && b_failed.is_ok(); ++id) {
    write_batch b;
    b.put_task(make_task(id, "p"), std::nullopt);
    bool applied = false;
    b_failed = store->try_apply(b, applied);
    ++tried;
    if (b_failed.is_ok() && !applied) {
      ++fell_back;
      b_failed = store->apply(b);
    }
  }
  waiting.join();
  REQUIRE(a_failed.is_ok());
  REQUIRE(b_failed.is_ok());
  INFO(fell_back << " of " << tried << " tries found the store busy");
  REQUIRE(store->counts().at("p") == make_counts(2 * per_thread, 0, 0, 0, 0, 0));
  REQUIRE(recover(*store).live.size() == 2 * per_thread);
}

TEST_CASE("a batch of 10,000 tasks applies and recovers", "[task_store]") {
  temp_dir tmp;
  constexpr task_id n = 10'000;
  {
    auto store = open_store(tmp.store());
    write_batch b;
    for (task_id id = 1; id <= n; ++id) b.put_task(make_task(id, id % 2 ? "a" : "b"), std::nullopt);
    b.set_last_id(n);
    REQUIRE(b.size() == n + 1);
    apply(*store, b);
  }
  auto store = open_store(tmp.store());
  const auto r = recover(*store);
  REQUIRE(r.live.size() == n);
  bool in_order = true;
  for (task_id i = 0; i < n; ++i) in_order = in_order && r.live[i].id == i + 1;
  REQUIRE(in_order);
  require_same(r.live[4999], make_task(5000, "b"));
  REQUIRE(r.last_id == n);
  // The same with a resident bound that ends in the upper half of the (parallel) scan: one scan's
  // result, ids in order.
  recovered_state bounded;
  REQUIRE(store->recover(bounded, 7000).is_ok());
  REQUIRE(bounded.live.size() == 7000);
  REQUIRE(bounded.queued.size() == n - 7000);
  bool split_in_order = true;
  for (task_id i = 0; i < 7000; ++i) split_in_order = split_in_order && bounded.live[i].id == i + 1;
  for (task_id i = 0; i < n - 7000; ++i)
    split_in_order = split_in_order && bounded.queued[i].id == 7001 + i;
  REQUIRE(split_in_order);
  CHECK(bounded.queued.back().project == "b");
  // And one that ends in the lower half: the upper half's whole tasks all become summaries.
  recovered_state small;
  REQUIRE(store->recover(small, 100).is_ok());
  REQUIRE(small.live.size() == 100);
  REQUIRE(small.queued.size() == n - 100);
  bool small_in_order = small.queued.front().id == 101;
  for (std::size_t i = 1; i < small.queued.size(); ++i)
    small_in_order = small_in_order && small.queued[i].id == small.queued[i - 1].id + 1;
  REQUIRE(small_in_order);
  REQUIRE(r.counts.at("a") == make_counts(n / 2, 0, 0, 0, 0, 0));
  REQUIRE(r.counts.at("b") == make_counts(n / 2, 0, 0, 0, 0, 0));
  REQUIRE(ids(list(*store, filter_of("a", task_status::pending, 2))) == std::vector<task_id>{9999, 9997});
}

TEST_CASE("recover keeps pending tasks whole up to the resident bound, then summarizes them",
          "[task_store]") {
  temp_dir tmp;
  {
    auto store = open_store(tmp.store());
    write_batch b;
    for (task_id id = 1; id <= 10; ++id) {
      task t = make_task(id, "p");
      t.tags = {"tag-" + std::to_string(id)};
      t.deadline = id == 9 ? 1'800'000'000'000 : 0;
      t.overdue = id == 10;
      t.status = id == 2 || id == 8 ? task_status::running : task_status::pending;
      b.put_task(t, std::nullopt);
    }
    apply(*store, b);
  }
  auto store = open_store(tmp.store());
  recovered_state r;
  REQUIRE(store->recover(r, 4).is_ok());
  // Whole: pending ones while fewer than 4 are kept, and running ones always.
  CHECK(ids(r.live) == std::vector<task_id>{1, 2, 3, 4, 8});
  REQUIRE(r.queued.size() == 5);
  std::vector<task_id> queued;
  for (const auto& q : r.queued) queued.push_back(q.id);
  CHECK(queued == std::vector<task_id>{5, 6, 7, 9, 10});
  const auto& nine = r.queued[3];
  CHECK(nine.project == "p");
  CHECK(nine.type == "resize");
  CHECK(nine.priority == 5);
  CHECK(nine.tags == std::vector<std::string>{"tag-9"});
  CHECK(nine.deadline == 1'800'000'000'000);
  CHECK_FALSE(nine.overdue);
  CHECK(r.queued[4].overdue);
  // Without a bound everything comes whole, as before.
  CHECK(ids(recover(*store).live).size() == 10);
}

TEST_CASE("one batch may change the same task several times", "[task_store]") {
  // Group commit folds consecutive changes into one batch; they apply in order.
  temp_dir tmp;
  auto store = open_store(tmp.store());
  task t = make_task(1, "p");
  write_batch b;
  b.put_task(t, std::nullopt);
  t.status = task_status::running;
  b.put_task(t, task_status::pending);
  t.status = task_status::completed;
  b.put_task(t, task_status::running);
  b.put_task(make_task(2, "p"), std::nullopt);
  apply(*store, b);

  REQUIRE(store->counts().at("p") == make_counts(1, 0, 1, 0, 0, 0));
  REQUIRE(ids(recover(*store).live) == std::vector<task_id>{2});
  task got;
  REQUIRE(store->get(1, got).is_ok());
  REQUIRE(got.status == task_status::completed);
}

// One change of a generated task history, as the dispatcher would stage it.
struct history_step {
  task t;
  std::optional<task_status> previous;
  millis previous_finished_at = 0;
  bool remove = false;
};

void stage(write_batch& b, const history_step& step) {
  if (step.remove)
    b.remove_task(step.t);
  else
    b.put_task(step.t, step.previous, step.previous_finished_at);
}

// Random lives of `tasks` tasks, interleaved: submitted, assigned, finished, requeued, retried,
// re-finished with another status, removed and submitted again, in every order the dispatcher
// may produce.
std::vector<history_step> random_histories(std::mt19937& rng, task_id tasks, std::size_t steps) {
  std::vector<std::optional<task>> stored(tasks + 1);  // what the store holds after the steps
  std::vector<history_step> out;
  const auto pick = [&](std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  };
  millis clock = 1'700'000'000'000;
  for (std::size_t i = 0; i < steps; ++i) {
    const task_id id = 1 + pick(tasks);
    clock += 1 + static_cast<millis>(pick(70'000));  // crosses the index's time buckets
    auto& current = stored[id];
    history_step step;
    if (!current) {
      step.t = make_task(id, pick(2) ? "p" : "q");
      step.t.created_at = clock;
    } else {
      step.t = *current;
      step.previous = current->status;
      const task_status from = current->status;
      if (from == task_status::pending) {
        step.t.status = task_status::running;
        step.t.worker = "w" + std::to_string(pick(3));
        ++step.t.attempts;
      } else if (from == task_status::running) {
        const std::array<task_status, 4> next = {task_status::pending, task_status::completed,
                                                 task_status::failed, task_status::dead};
        step.t.status = next[pick(next.size())];
        if (step.t.status == task_status::pending) {
          step.t.worker.clear();
        } else {
          step.t.finished_at = clock;
          step.t.result = "result-" + std::to_string(i);
        }
      } else if (pick(3) == 0) {
        step.remove = true;
        step.previous.reset();
      } else if (pick(2) == 0) {
        step.t.status = task_status::cancelled;  // a finished record rewritten
      } else {
        step.t.status = task_status::pending;  // retried
        step.t.worker.clear();
        step.previous_finished_at = step.t.finished_at;
        step.t.finished_at = 0;
      }
    }
    if (step.remove)
      current.reset();
    else
      current = step.t;
    out.push_back(std::move(step));
  }
  return out;
}

// Entries (puts and deletions) in the SST files of column family `cf` of a closed store: what
// reached disk, tombstones included, which an iterator would not show.
std::uint64_t stored_entries(const std::string& dir, const std::string& cf) {
  raw_store_reader raw(dir);
  rocksdb::TablePropertiesCollection tables;
  REQUIRE(raw.db().GetPropertiesOfAllTables(raw.cf(cf), &tables).ok());
  std::uint64_t n = 0;
  for (const auto& [file, props] : tables) n += props->num_entries;  // deletions included
  return n;
}

TEST_CASE("a task submitted then assigned and finished in one batch never touches live",
          "[task_store]") {
  // The chain is written as its last state: straight into "done", with no put into "live" and
  // so no tombstone there either.
  temp_dir tmp;
  {
    auto store = open_store(tmp.store());
    write_batch b;
    task t = make_task(1, "p");
    b.put_task(t, std::nullopt);
    t.status = task_status::running;
    t.worker = "w";
    b.put_task(t, task_status::pending);
    t.status = task_status::completed;
    t.finished_at = t.created_at + 5;
    b.put_task(t, task_status::running);
    apply(*store, b);
  }  // closing flushes the memtables
  CHECK(stored_entries(tmp.store(), "live") == 0);
  CHECK(stored_entries(tmp.store(), "done") == 1);

  // Control: the same chain over two batches leaves the submit's put and its tombstone.
  temp_dir split;
  {
    auto store = open_store(split.store());
    task t = make_task(1, "p");
    write_batch submit;
    submit.put_task(t, std::nullopt);
    apply(*store, submit);
    write_batch rest;
    t.status = task_status::running;
    rest.put_task(t, task_status::pending);
    t.status = task_status::completed;
    t.finished_at = t.created_at + 5;
    rest.put_task(t, task_status::running);
    apply(*store, rest);
  }
  CHECK(stored_entries(split.store(), "live") == 1);  // the tombstone; the puts it hid are gone
}

TEST_CASE("changes grouped in one batch leave exactly what they leave one batch each",
          "[task_store]") {
  // The store folds a task's chain of puts within a batch into one (pending, running, completed
  // in one group commit writes only the completed record); nothing of that may show.
  std::mt19937 rng(20261121);
  for (int round = 0; round < 10; ++round) {
    const auto history = random_histories(rng, 12, 150);
    temp_dir one_each, grouped, all_in_one;
    {
      auto a = open_store(one_each.store());
      auto b = open_store(grouped.store());
      auto c = open_store(all_in_one.store());
      write_batch group, all;
      for (const auto& step : history) {
        write_batch single;
        stage(single, step);
        apply(*a, single);
        stage(group, step);
        if (std::uniform_int_distribution<int>(0, 9)(rng) == 0) {
          apply(*b, group);
          group.clear();
        }
        stage(all, step);
      }
      apply(*b, group);
      apply(*c, all);
      REQUIRE(a->counts() == b->counts());
      REQUIRE(a->counts() == c->counts());
    }
    INFO("round " << round);
    const auto expected = raw_contents(one_each.store());
    REQUIRE(raw_contents(grouped.store()) == expected);
    REQUIRE(raw_contents(all_in_one.store()) == expected);
  }
}

TEST_CASE("scheduled tasks are live: recovered, counted and listed", "[task_store]") {
  temp_dir tmp;
  task later = make_task(1, "p", task_status::scheduled);
  later.run_at = 1'700'000'060'000;
  task retry = make_task(2, "p", task_status::running);
  {
    auto store = open_store(tmp.store());
    write_batch b;
    b.put_task(later, std::nullopt);
    b.put_task(retry, std::nullopt);
    apply(*store, b);
    // A failed attempt waiting out its backoff.
    retry.attempts = 1;
    retry.run_at = 1'700'000'030'000;
    retry.error = "exit 1";
    transition(*store, retry, task_status::scheduled);
    REQUIRE(store->counts().at("p") == make_counts(0, 0, 0, 0, 0, 0, 2));
  }
  auto store = open_store(tmp.store());
  auto r = recover(*store);
  REQUIRE(r.live.size() == 2);
  require_same(r.live[0], later);
  require_same(r.live[1], retry);
  REQUIRE(r.counts.at("p") == make_counts(0, 0, 0, 0, 0, 0, 2));
  REQUIRE(ids(list(*store, filter_of("p", task_status::scheduled, 100))) == std::vector<task_id>{2, 1});

  // Its time comes: scheduled -> pending stays in the live set.
  transition(*store, later, task_status::pending);
  REQUIRE(store->counts().at("p") == make_counts(1, 0, 0, 0, 0, 0, 1));
  r = recover(*store);
  REQUIRE(ids(r.live) == std::vector<task_id>{1, 2});
  REQUIRE(r.live[0].status == task_status::pending);
}

TEST_CASE("idempotency entries: lookup, expiry, replacement and reopen", "[task_store]") {
  temp_dir tmp;
  constexpr millis t0 = 1'700'000'000'000;
  {
    auto store = open_store(tmp.store());
    REQUIRE_FALSE(find_key(*store, "images", "order-17", 0));  // fresh store
    write_batch b;
    b.put_task(make_task(42, "images"), std::nullopt);
    b.put_idempotency("images", "order-17", 42, t0);
    // Same bytes split differently between project and key: a different entry.
    b.put_idempotency("image", "sorder-17", 43, t0);
    // Keys are bytes: a '\0' inside one is part of it.
    b.put_idempotency("images", std::string("a\0b", 3), 0x0102030405060708ull, t0 + 5);
    REQUIRE(b.size() == 4);
    apply(*store, b);

    REQUIRE(find_key(*store, "images", "order-17", t0) == task_id{42});
    REQUIRE(find_key(*store, "images", "order-17", 0) == task_id{42});
    // Older than not_before: expired, even though no purge has deleted it.
    REQUIRE_FALSE(find_key(*store, "images", "order-17", t0 + 1));
    REQUIRE(find_key(*store, "image", "sorder-17", t0) == task_id{43});
    REQUIRE_FALSE(find_key(*store, "mail", "order-17", 0));   // keys are per project
    REQUIRE_FALSE(find_key(*store, "images", "order-18", 0));
    REQUIRE_FALSE(find_key(*store, "images", "a", 0));

    // A later submit after expiry takes the key over.
    write_batch again;
    again.put_idempotency("images", "order-17", 50, t0 + 86'400'000);
    apply(*store, again);
    REQUIRE(find_key(*store, "images", "order-17", t0 + 1) == task_id{50});
  }
  auto store = open_store(tmp.store());
  REQUIRE(find_key(*store, "images", "order-17", t0 + 86'400'000) == task_id{50});
  REQUIRE(find_key(*store, "image", "sorder-17", 0) == task_id{43});
  REQUIRE(find_key(*store, "images", std::string("a\0b", 3), t0 + 5) ==
          task_id{0x0102030405060708ull});
  REQUIRE_FALSE(find_key(*store, "images", std::string("a\0b", 3), t0 + 6));
}

TEST_CASE("invalid idempotency entries reject the whole batch", "[task_store]") {
  temp_dir tmp;
  auto store = open_store(tmp.store());
  for (const auto& [project, key] : {std::pair<std::string, std::string>{"p", ""},
                                     {std::string("p\0q", 3), "k"}}) {
    write_batch b;
    b.put_task(make_task(1, "p"), std::nullopt);
    b.put_idempotency(project, key, 1, 1000);
    const status st = store->apply(b);
    REQUIRE(st.error_code() == status::code::invalid_argument);
    REQUIRE_THAT(st.message(), Contains("task 1"));
  }
  REQUIRE(store->counts().empty());
  task got;
  REQUIRE(store->get(1, got).is_not_found());
  std::optional<task_id> out = 7;
  REQUIRE(store->find_idempotent(std::string("p\0q", 3), "k", 0, out).error_code() ==
          status::code::invalid_argument);
  REQUIRE_FALSE(out);
}

TEST_CASE("a store from before the idempotency column family opens and gains it",
          "[task_store]") {
  temp_dir tmp;
  const task live = make_task(1, "p");
  const task done = finished_task(2, "p", task_status::completed, 1'700'000'000'500);
  {
    raw_store_writer old(tmp.store(), /*with_idempotency=*/false);
    old.put(raw_store_writer::live, be64(1), version1_record(live));
    old.put(raw_store_writer::done, be64(2), version1_record(done));
    old.put(raw_store_writer::meta, "last_id", be64(2));
    // That release counted six statuses.
    old.put(raw_store_writer::meta, "counts/p", le64s({1, 0, 1, 0, 0, 0}));
  }
  {
    auto store = open_store(tmp.store());
    const auto r = recover(*store);
    REQUIRE(r.live.size() == 1);
    require_same(r.live[0], live);
    REQUIRE(r.last_id == 2);
    REQUIRE(r.counts.at("p") == make_counts(1, 0, 1, 0, 0, 0, 0));
    task got;
    REQUIRE(store->get(2, got).is_ok());
    require_same(got, done);

    REQUIRE_FALSE(find_key(*store, "p", "k", 0));
    write_batch b;
    b.put_idempotency("p", "k", 1, 1'700'000'000'001);
    task sched = make_task(3, "p", task_status::scheduled);
    b.put_task(sched, std::nullopt);
    apply(*store, b);
  }
  auto store = open_store(tmp.store());
  REQUIRE(find_key(*store, "p", "k", 0) == task_id{1});
  REQUIRE(store->counts().at("p") == make_counts(1, 0, 1, 0, 0, 0, 1));
}

TEST_CASE("remove_task deletes a task and takes it off the counts", "[task_store]") {
  temp_dir tmp;
  task done = finished_task(1, "p", task_status::completed, 1'700'000'000'900);
  task live = make_task(2, "p");
  task other = finished_task(3, "q", task_status::cancelled, 1'700'000'000'900);
  {
    auto store = open_store(tmp.store());
    write_batch b;
    for (const task* t : {&done, &live, &other}) b.put_task(*t, std::nullopt);
    b.put_idempotency("p", "k1", 1, 1'700'000'000'001);
    apply(*store, b);

    write_batch rm;
    rm.remove_task(done);
    rm.remove_task(live);
    REQUIRE(rm.size() == 2);
    apply(*store, rm);
    REQUIRE(store->counts().at("p") == make_counts(0, 0, 0, 0, 0, 0));
    REQUIRE(store->counts().at("q") == make_counts(0, 0, 0, 0, 0, 1));

    // Changed and removed in one group commit: the order holds, the task is gone.
    task brief = make_task(4, "p");
    write_batch g;
    g.put_task(brief, std::nullopt);
    brief.status = task_status::cancelled;
    g.put_task(brief, task_status::pending);
    g.remove_task(brief);
    apply(*store, g);

    // A wrong status clamps at zero rather than wrapping around.
    write_batch wrong;
    task ghost = make_task(99, "q", task_status::dead);
    wrong.remove_task(ghost);
    apply(*store, wrong);
    REQUIRE(store->counts().at("q") == make_counts(0, 0, 0, 0, 0, 1));
  }
  auto store = open_store(tmp.store());
  task got;
  REQUIRE(store->get(1, got).is_not_found());
  REQUIRE(store->get(2, got).is_not_found());
  REQUIRE(store->get(4, got).is_not_found());
  REQUIRE(store->get(3, got).is_ok());
  const auto r = recover(*store);
  REQUIRE(r.live.empty());
  REQUIRE(r.counts.at("p") == make_counts(0, 0, 0, 0, 0, 0));
  REQUIRE(r.counts.at("q") == make_counts(0, 0, 0, 0, 0, 1));
  REQUIRE(ids(list(*store, {})) == std::vector<task_id>{3});
  // The idempotency entry has its own retention: it outlives the task.
  REQUIRE(find_key(*store, "p", "k1", 0) == task_id{1});
}

TEST_CASE("purge deletes old finished tasks behind newer ones and old keys", "[task_store]") {
  temp_dir tmp;
  constexpr millis cutoff = 1'000'000;
  {
    auto store = open_store(tmp.store());
    write_batch b;
    // Finished out of id order: old ones sit behind newer ones.
    b.put_task(finished_task(1, "a", task_status::completed, cutoff - 900), std::nullopt);
    b.put_task(finished_task(2, "a", task_status::completed, cutoff + 500), std::nullopt);
    b.put_task(finished_task(3, "a", task_status::dead, cutoff - 1), std::nullopt);
    b.put_task(finished_task(4, "a", task_status::completed, cutoff), std::nullopt);  // kept
    b.put_task(finished_task(5, "b", task_status::failed, cutoff - 100), std::nullopt);
    b.put_task(make_task(6, "b", task_status::running), std::nullopt);  // live: never purged
    // No finish time (the dispatcher always sets one): not in the finish time index, so it
    // stays whatever its age.
    task no_times = finished_task(7, "b", task_status::cancelled, 0);
    no_times.created_at = cutoff - 5;
    b.put_task(no_times, std::nullopt);
    // Finished in a later ~65 s bucket than the cutoff: never even examined.
    b.put_task(finished_task(8, "b", task_status::completed, cutoff + 10'000'000), std::nullopt);
    b.put_idempotency("a", "old", 1, cutoff - 1);
    b.put_idempotency("a", "new", 2, cutoff);
    b.put_idempotency("b", "old", 5, 0);
    apply(*store, b);
    REQUIRE(store->counts().at("a") == make_counts(0, 0, 3, 0, 1, 0));
    REQUIRE(store->counts().at("b") == make_counts(0, 1, 1, 1, 0, 1));

    purge_cursor cursor;
    const purge_step r = purge(*store, cursor, cutoff, cutoff, 100);
    REQUIRE(r.tasks_removed == 3);  // 1, 3, 5
    REQUIRE(r.removed == std::map<std::string, status_counts>{
                             {"a", make_counts(0, 0, 1, 0, 1, 0)},
                             {"b", make_counts(0, 0, 0, 1, 0, 0)}});
    REQUIRE(r.keys_removed == 2);
    REQUIRE(r.examined == 5 + 3);  // the tasks finished in the cutoff's bucket, every key
    REQUIRE(r.unreadable == 0);
    REQUIRE_FALSE(r.more);
    REQUIRE(store->counts().at("a") == make_counts(0, 0, 2, 0, 0, 0));
    REQUIRE(store->counts().at("b") == make_counts(0, 1, 1, 0, 0, 1));

    // Nothing left to do at the same cutoffs.
    const purge_step again = purge(*store, cursor, cutoff, cutoff, 100);
    REQUIRE(again.tasks_removed + again.keys_removed == 0);
    REQUIRE_FALSE(again.more);
  }
  auto store = open_store(tmp.store());
  REQUIRE(ids(list(*store, {})) == std::vector<task_id>{8, 7, 6, 4, 2});
  const auto r = recover(*store);
  REQUIRE(r.counts.at("a") == make_counts(0, 0, 2, 0, 0, 0));
  REQUIRE(r.counts.at("b") == make_counts(0, 1, 1, 0, 0, 1));
  REQUIRE_FALSE(find_key(*store, "a", "old", 0));
  REQUIRE(find_key(*store, "a", "new", 0) == task_id{2});
  REQUIRE_FALSE(find_key(*store, "b", "old", 0));

  purge_cursor cursor;
  expired_entries found;
  REQUIRE(store->find_expired(cutoff, cutoff, 0, cursor, found).error_code() ==
          status::code::invalid_argument);
}

TEST_CASE("purge works in bounded chunks and resumes where it stopped", "[task_store]") {
  temp_dir tmp;
  constexpr millis cutoff = 1'000'000;
  auto store = open_store(tmp.store());
  write_batch b;
  // 20 finished tasks, odd ids old, even ids new; 6 keys, the first three old.
  for (task_id id = 1; id <= 20; ++id)
    b.put_task(finished_task(id, "p", task_status::completed, id % 2 ? cutoff - 1 : cutoff),
               std::nullopt);
  for (int k = 0; k < 6; ++k)
    b.put_idempotency("p", "key-" + std::to_string(k), static_cast<task_id>(k + 1),
                      k < 3 ? cutoff - 1 : cutoff);
  b.put_task(make_task(21, "p"), std::nullopt);  // live, finishes later
  apply(*store, b);

  // 25 entries (26 less the task removed after the first call) at 4 a call: six full calls and
  // a last one of 1, however the deletes fall; each call resumes where the previous stopped.
  std::vector<std::size_t> examined;
  std::size_t tasks_removed = 0, keys_removed = 0;
  bool more = true;
  purge_cursor cursor;
  for (int call = 0; call < 20 && more; ++call) {
    const purge_step r = purge(*store, cursor, cutoff, cutoff, 4);
    REQUIRE(r.tasks_removed + r.keys_removed <= 4);
    examined.push_back(r.examined);
    tasks_removed += r.tasks_removed;
    keys_removed += r.keys_removed;
    more = r.more;
    if (call == 0) {
      // Between calls the store keeps changing; the cursor copes with a task removed under it.
      write_batch rm;
      rm.remove_task(finished_task(3, "p", task_status::completed, cutoff - 1));
      apply(*store, rm);
    }
  }
  REQUIRE(examined == std::vector<std::size_t>{4, 4, 4, 4, 4, 4, 1});
  REQUIRE(tasks_removed == 9);  // the ten odd ids but 3, which remove_task took
  REQUIRE(keys_removed == 3);
  REQUIRE(store->counts().at("p") == make_counts(1, 0, 10, 0, 0, 0));
  REQUIRE(ids(list(*store, filter_of(std::nullopt, task_status::completed, 100))) ==
          std::vector<task_id>{20, 18, 16, 14, 12, 10, 8, 6, 4, 2});

  // A new round starts from the beginning: a low id finished since is reached.
  task late = make_task(21, "p");
  late.finished_at = cutoff + 10;
  transition(*store, late, task_status::completed);
  const purge_step r = purge(*store, cursor, cutoff + 11, cutoff, 100);
  REQUIRE(r.tasks_removed == 11);
  REQUIRE(r.keys_removed == 0);
  REQUIRE_FALSE(r.more);
  REQUIRE(store->counts().at("p") == make_counts(0, 0, 0, 0, 0, 0));
  REQUIRE(list(*store, {}).empty());
}

TEST_CASE("purge checks each candidate again and deletes only what is still expired",
          "[task_store]") {
  temp_dir tmp;
  constexpr millis cutoff = 1'000'000;
  auto store = open_store(tmp.store());
  write_batch b;
  for (task_id id = 1; id <= 4; ++id)
    b.put_task(finished_task(id, "p", task_status::failed, cutoff - 10), std::nullopt);
  b.put_idempotency("p", "old", 1, cutoff - 1);
  b.put_idempotency("p", "reused", 2, cutoff - 1);
  apply(*store, b);

  purge_cursor cursor;
  expired_entries found;
  REQUIRE(store->find_expired(cutoff, cutoff, 100, cursor, found).is_ok());
  REQUIRE(found.tasks.size() == 4);
  REQUIRE(found.keys.size() == 2);
  REQUIRE(found.examined == 6);
  REQUIRE_FALSE(found.more);

  // Between the search and the deletes (two actors), the writer goes on: task 1 is removed,
  // task 2 is retried and finishes again after the cutoff, task 3 is retried and still runs,
  // and the key "reused" is written again.
  write_batch changes;
  changes.remove_task(finished_task(1, "p", task_status::failed, cutoff - 10));
  for (task_id id : {2, 3}) {
    task retried = finished_task(id, "p", task_status::running, 0);
    changes.put_task(retried, task_status::failed, cutoff - 10);
  }
  changes.put_idempotency("p", "reused", 2, cutoff + 1);
  apply(*store, changes);
  task again = finished_task(2, "p", task_status::completed, cutoff + 5);
  write_batch finished;
  finished.put_task(again, task_status::running);
  apply(*store, finished);

  // Sliced as the dispatcher does it: each slice is checked against the store as it is now.
  purge_result first, second;
  REQUIRE(store->purge(found.take(3), cutoff, cutoff, first).is_ok());
  REQUIRE(store->purge(found.take(500), cutoff, cutoff, second).is_ok());
  REQUIRE(found.empty());
  REQUIRE(first.tasks_removed() + second.tasks_removed() == 1);  // task 4
  REQUIRE(first.keys_removed + second.keys_removed == 1);    // "old"
  REQUIRE(store->counts().at("p") == make_counts(0, 1, 1, 0, 0, 0));
  task got;
  REQUIRE(store->get(2, got).is_ok());
  REQUIRE(got.status == task_status::completed);
  REQUIRE(store->get(3, got).is_ok());
  REQUIRE(got.status == task_status::running);
  REQUIRE(store->get(4, got).is_not_found());
  REQUIRE(find_key(*store, "p", "reused", 0) == task_id{2});
  REQUIRE_FALSE(find_key(*store, "p", "old", 0));
}

TEST_CASE("purge leaves unreadable tasks and drops unreadable keys", "[task_store]") {
  temp_dir tmp;
  {
    auto store = open_store(tmp.store());
    write_batch b;
    b.put_task(finished_task(1, "p", task_status::completed, 10), std::nullopt);
    b.put_task(finished_task(2, "p", task_status::completed, 10), std::nullopt);
    b.put_task(finished_task(3, "p", task_status::completed, 10), std::nullopt);
    apply(*store, b);
  }
  {
    // Behind the store's back: task 1's record is damaged and task 3's is gone; their index
    // entries stay.
    raw_store_writer raw(tmp.store(), /*with_idempotency=*/true, /*with_index=*/true);
    raw.put(raw_store_writer::done, be64(1), "not a task");
    raw.remove(raw_store_writer::done, be64(3));
    raw.put(raw_store_writer::idempotency, std::string("p\0bad", 5), "short");
    raw.put(raw_store_writer::idempotency, std::string("p\0good", 6), le64s({2, 10}));
  }
  auto store = open_store(tmp.store());
  REQUIRE(find_key(*store, "p", "good", 10) == task_id{2});
  std::optional<task_id> out;
  const status bad = store->find_idempotent("p", "bad", 0, out);
  REQUIRE(bad.error_code() == status::code::corruption);
  REQUIRE_THAT(bad.message(), Contains("idempotency"));

  purge_cursor cursor;
  const purge_step r = purge(*store, cursor, 1000, 1000, 100);
  REQUIRE(r.tasks_removed == 1);
  REQUIRE(r.keys_removed == 2);
  REQUIRE(r.unreadable == 2);
  REQUIRE(r.examined == 5);  // three finish time entries, two keys
  REQUIRE_FALSE(r.more);
  // Task 3 stays in the counts: without its record the purge cannot tell what to take off.
  REQUIRE(store->counts().at("p") == make_counts(0, 0, 2, 0, 0, 0));
  task got;
  REQUIRE(store->get(1, got).error_code() == status::code::corruption);  // still there
  REQUIRE(store->get(2, got).is_not_found());
  REQUIRE_FALSE(find_key(*store, "p", "bad", 0));
  REQUIRE_FALSE(find_key(*store, "p", "good", 0));

  // The entry that led nowhere is gone; the unreadable task's stays, and is met again.
  const purge_step again = purge(*store, cursor, 1000, 1000, 100);
  REQUIRE(again.examined == 1);
  REQUIRE(again.unreadable == 1);
  REQUIRE(again.tasks_removed + again.keys_removed == 0);
}

// Runs only as the child process of the test below, which sets the directory and the file size
// limit; hidden ("[.]") so that a normal run skips it.
TEST_CASE(write_failure_child_name, "[.]") {
  const char* dir = std::getenv(write_failure_dir_env);
  if (dir == nullptr) {
    SUCCEED("nothing to do outside the write failure test");
    return;
  }
  auto store = open_store(dir);
  write_batch first;
  first.put_task(make_task(1, "p"), std::nullopt);
  first.put_task(finished_task(2, "p", task_status::completed, 1), std::nullopt);
  first.set_last_id(2);
  apply(*store, first);

  // Batches of 8 x 64 KiB against a 2 MiB file size limit: the WAL hits it within a few.
  status failed;
  task_id next = 3, first_refused = 0;
  for (int i = 0; i < 64 && failed.is_ok(); ++i) {
    write_batch b;
    first_refused = next;
    for (int j = 0; j < 8; ++j) {
      task t = make_task(next++, "p");
      t.payload.assign(64u << 10, 'x');
      b.put_task(t, std::nullopt);
    }
    b.put_idempotency("p", "batch-" + std::to_string(i), first_refused, 1000);
    b.set_last_id(next - 1);
    const auto counts_before = store->counts();
    failed = store->apply(b);
    if (!failed.is_ok()) REQUIRE(store->counts() == counts_before);
  }
  INFO(failed.to_string());
  REQUIRE(failed.error_code() == status::code::io_error);
  REQUIRE_THAT(failed.message(), Contains("refused the write"));
  REQUIRE_THAT(failed.message(), Contains("File too large"));  // RocksDB's reason: EFBIG
  task got;
  REQUIRE(store->get(first_refused, got).is_not_found());

  // purge() writes through the same path: refused, nothing deleted, counts unchanged.
  const auto counts_before = store->counts();
  purge_cursor cursor;
  expired_entries found;
  REQUIRE(store->find_expired(1'000'000, 1'000'000, 100, cursor, found).is_ok());
  REQUIRE(found.tasks.size() == 1);  // task 2's entry
  purge_result out;
  const status purged = store->purge(found, 1'000'000, 1'000'000, out);
  INFO(purged.to_string());
  REQUIRE(purged.error_code() == status::code::io_error);
  REQUIRE_THAT(purged.message(), Contains("refused the write"));
  REQUIRE(store->counts() == counts_before);
  REQUIRE(store->get(2, got).is_ok());
}

TEST_CASE("a write RocksDB refuses fails apply() and purge() and changes nothing",
          "[task_store]") {
  // A real failure: the child process gets a 2 MiB file size limit with SIGXFSZ ignored, so
  // the WAL write past it fails with EFBIG. A separate process because the limit is
  // process-wide, and exec'd (the same binary, running only the hidden test above) because
  // fork() of a process with RocksDB's threads is not safe to keep using RocksDB in.
  temp_dir tmp;
  const std::string log = tmp.path() + "/child.log";
  // Everything is prepared before fork(): between it and execve() only async-signal-safe calls.
  std::string exe = fs::read_symlink("/proc/self/exe").string();
  std::string name = write_failure_child_name;
  char* argv[] = {exe.data(), name.data(), nullptr};
  std::string dir_entry = std::string(write_failure_dir_env) + "=" + tmp.store();
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(dir_entry.data());
  envp.push_back(nullptr);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  const rlimit limit{2u << 20, 2u << 20};
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(log_fd >= 0);

  const pid_t pid = fork();
  if (pid == 0) {
    // An ignored signal stays ignored across execve(), and so does the limit.
    if (dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0 ||
        sigaction(SIGXFSZ, &ignore, nullptr) != 0 || setrlimit(RLIMIT_FSIZE, &limit) != 0)
      _exit(125);
    alarm(30);  // a hung child must not hang the suite; the alarm survives execve() too
    execve(exe.c_str(), argv, envp.data());
    _exit(126);
  }
  ::close(log_fd);
  REQUIRE(pid > 0);
  int wstatus = 0;
  pid_t waited = -1;
  do waited = waitpid(pid, &wstatus, 0);
  while (waited < 0 && errno == EINTR);
  REQUIRE(waited == pid);

  std::ifstream in(log);
  const std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO("child output:\n" << output);
  REQUIRE(WIFEXITED(wstatus));
  REQUIRE(WEXITSTATUS(wstatus) == 0);
  REQUIRE_THAT(output, Contains("All tests passed"));  // it ran its assertions, all of them

  // Reopened without the limit: whole batches only, counts agree with the tasks.
  auto store = open_store(tmp.store());
  const auto r = recover(*store);
  REQUIRE(r.live.size() >= 1);
  REQUIRE((r.live.size() - 1) % 8 == 0);
  REQUIRE(r.last_id == std::max<task_id>(2, r.live.back().id));
  REQUIRE(r.counts.at("p") == make_counts(r.live.size(), 0, 1, 0, 0, 0));
  task got;
  REQUIRE(store->get(2, got).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Queries: filters, paging and the index of finished tasks.

namespace {

// Every key of the "index" column family, read with RocksDB directly (the store must be
// closed).
// How many index keys name task `id` (they all end in its big-endian id).
std::size_t entries_of(const std::vector<std::string>& keys, task_id id) {
  const std::string suffix = be64(id);
  return static_cast<std::size_t>(
      std::count_if(keys.begin(), keys.end(), [&](const std::string& k) {
        return k.size() > 8 && k.compare(k.size() - 8, 8, suffix) == 0;
      }));
}

// A finished task with a worker and a finished_at has: project, type, worker, status, and one
// finish time entry per bucket size (2). Creation time has none (a created range is an id range).
constexpr std::size_t full_entries = 4 + 2;

struct page_result {
  std::vector<task> tasks;
  task_id next = 0;
  query_stats stats;
};

page_result query(task_store& s, const task_filter& f) {
  page_result r;
  const status st = s.list(f, r.tasks, r.next, &r.stats);
  INFO(st.to_string());
  REQUIRE(st.is_ok());
  return r;
}

// Every page of `f` (limit = page size) from the start, followed through `next`.
std::vector<task_id> all_pages(task_store& s, task_filter f) {
  std::vector<task_id> out;
  f.after = 0;
  for (int pages = 0; pages < 100000; ++pages) {
    const auto page = query(s, f);
    REQUIRE(page.tasks.size() <= f.limit);
    for (const auto& t : page.tasks) out.push_back(t.id);
    if (page.next == 0) return out;
    REQUIRE(page.next == page.tasks.back().id);
    f.after = page.next;
  }
  FAIL("paging does not end");
  return out;
}

bool has_folded(const std::string& field, const std::string& text) {
  const auto lower = [](std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  return lower(field).find(lower(text)) != std::string::npos;
}

// The filter semantics, spelled out independently of the store.
bool reference_match(const task& t, const task_filter& f) {
  const auto in = [](millis v, millis from, millis to) {
    if (from == 0 && to == 0) return true;
    return v != 0 && (from == 0 || v >= from) && (to == 0 || v < to);
  };
  if (f.project && t.project != *f.project) return false;
  if (f.status && t.status != *f.status) return false;
  if (f.type && t.type != *f.type) return false;
  if (f.worker && t.worker != *f.worker) return false;
  if (f.priority_min && t.priority < *f.priority_min) return false;
  if (f.priority_max && t.priority > *f.priority_max) return false;
  if (!in(t.created_at, f.created_from, f.created_to)) return false;
  if (!in(t.finished_at, f.finished_from, f.finished_to)) return false;
  if (!f.text.empty() && !has_folded(t.type, f.text) && !has_folded(t.title, f.text) &&
      !has_folded(t.description, f.text))
    return false;
  return true;
}

std::vector<task_id> reference_ids(const std::vector<task>& all, const task_filter& f) {
  std::vector<task_id> out;
  for (const auto& t : all)
    if (reference_match(t, f)) out.push_back(t.id);
  std::sort(out.begin(), out.end());
  if (!f.oldest_first) std::reverse(out.begin(), out.end());
  return out;
}

constexpr millis query_base = 1'700'000'000'000;

// Tasks whose attributes vary independently: 6 projects, 5 types, 7 statuses, workers (or
// none), priorities -5..5, created over ~11.5 days in id order (three tasks at each time, as
// tasks of one submit), finished 0..36 h later (so out of id order), some titles and
// descriptions.
std::vector<task> varied_tasks(task_id count) {
  const char* const projects[] = {"alpha", "beta", "gamma", "delta", "eps", "zeta"};
  const char* const types[] = {"resize", "Encode", "mail", "crawl", "sum"};
  const char* const workers[] = {"", "w1", "w2", "w3", "w4", "w5"};
  const task_status statuses[] = {task_status::pending,   task_status::running,
                                  task_status::completed, task_status::failed,
                                  task_status::dead,      task_status::cancelled,
                                  task_status::scheduled, task_status::completed};
  std::vector<task> out;
  for (task_id id = 1; id <= count; ++id) {
    task t = make_task(id, projects[id % 6]);
    t.type = types[(id / 6) % 5];
    t.priority = static_cast<std::int32_t>(id % 11) - 5;
    t.status = statuses[(id * 5) % 8];
    t.worker = workers[(id / 2) % 6];
    t.created_at = query_base + static_cast<millis>(id / 3) * 2'000'000;
    t.finished_at =
        is_final(t.status) ? t.created_at + static_cast<millis>(id % 13) * 10'800'000 : 0;
    if (id % 5 == 0) t.title = "Nightly Report " + std::to_string(id);
    t.description = id % 7 == 0 ? "contains the NEEDLE word" : "plain";
    out.push_back(std::move(t));
  }
  return out;
}

void store_all(task_store& s, const std::vector<task>& tasks) {
  write_batch b;
  for (const auto& t : tasks) {
    b.put_task(t, std::nullopt);
    if (b.size() == 5000) {
      apply(s, b);
      b.clear();
    }
  }
  if (!b.empty()) apply(s, b);
}

task_filter any_filter(std::uint32_t limit = 10000) {
  task_filter f;
  f.limit = limit;
  return f;
}

}  // namespace

TEST_CASE("the index follows a task into done and out of it by retry, remove and purge",
          "[task_store][query]") {
  temp_dir tmp;
  task t = make_task(1, "p", task_status::running);
  t.worker = "w1";
  task other = finished_task(2, "q", task_status::completed, 1'700'000'100'000);
  other.worker = "w2";
  {
    auto store = open_store(tmp.store());
    write_batch b;
    b.put_task(t, std::nullopt);
    b.put_task(other, std::nullopt);
    apply(*store, b);
  }
  REQUIRE(entries_of(raw_index_keys(tmp.store()), 1) == 0);  // live: not indexed
  REQUIRE(entries_of(raw_index_keys(tmp.store()), 2) == full_entries);

  const millis first_finish = 1'700'000'050'000;
  {
    auto store = open_store(tmp.store());
    t.finished_at = first_finish;
    transition(*store, t, task_status::failed);
  }
  {
    const auto keys = raw_index_keys(tmp.store());
    REQUIRE(entries_of(keys, 1) == full_entries);
    REQUIRE(std::count(keys.begin(), keys.end(), std::string("S\x03", 2) + be64(1)) == 1);
  }

  // Retried as the dispatcher does it: finished_at cleared, the stored one passed along.
  {
    auto store = open_store(tmp.store());
    write_batch b;
    t.finished_at = 0;
    t.status = task_status::pending;
    b.put_task(t, task_status::failed, first_finish);
    apply(*store, b);
    task_filter f = any_filter();
    f.project = "p";
    REQUIRE(ids(list(*store, f)) == std::vector<task_id>{1});  // from "live" now
  }
  REQUIRE(entries_of(raw_index_keys(tmp.store()), 1) == 0);

  // Finished again, then its status changes while finished: only the status entry moves.
  {
    auto store = open_store(tmp.store());
    t.finished_at = first_finish + 1000;
    transition(*store, t, task_status::dead);
    transition(*store, t, task_status::cancelled);
  }
  {
    const auto keys = raw_index_keys(tmp.store());
    REQUIRE(entries_of(keys, 1) == full_entries);
    REQUIRE(std::count(keys.begin(), keys.end(), std::string("S\x04", 2) + be64(1)) == 0);
    REQUIRE(std::count(keys.begin(), keys.end(), std::string("S\x05", 2) + be64(1)) == 1);
  }

  {
    auto store = open_store(tmp.store());
    write_batch b;
    b.remove_task(t);
    apply(*store, b);
  }
  REQUIRE(entries_of(raw_index_keys(tmp.store()), 1) == 0);
  REQUIRE(entries_of(raw_index_keys(tmp.store()), 2) == full_entries);

  {
    auto store = open_store(tmp.store());
    purge_cursor cursor;
    REQUIRE(purge(*store, cursor, 1'700'000'100'001, 0, 100).tasks_removed == 1);
  }
  REQUIRE(raw_index_keys(tmp.store()).empty());
}

TEST_CASE("a retry that does not pass the old finish time leaves entries that are never shown",
          "[task_store][query]") {
  temp_dir tmp;
  auto store = open_store(tmp.store());
  task t = finished_task(1, "p", task_status::dead, query_base + 1000);
  t.worker = "w";
  write_batch b;
  b.put_task(t, std::nullopt);
  apply(*store, b);

  t.finished_at = 0;
  transition(*store, t, task_status::pending);  // no previous_finished_at
  t.finished_at = query_base + 500'000'000;
  transition(*store, t, task_status::completed);

  task_filter old_time = any_filter();
  old_time.finished_from = query_base;
  old_time.finished_to = query_base + 2000;
  REQUIRE(list(*store, old_time).empty());
  task_filter both = any_filter();
  both.finished_from = query_base;
  REQUIRE(ids(list(*store, both)) == std::vector<task_id>{1});  // once, not twice
  both.oldest_first = true;
  REQUIRE(ids(list(*store, both)) == std::vector<task_id>{1});
  task_filter new_time = any_filter();
  new_time.finished_from = query_base + 500'000'000;
  new_time.finished_to = query_base + 500'000'001;
  REQUIRE(ids(list(*store, new_time)) == std::vector<task_id>{1});
}

TEST_CASE("every filter, alone and combined, returns exactly the matching tasks in order",
          "[task_store][query]") {
  temp_dir tmp;
  auto store = open_store(tmp.store());
  const auto all = varied_tasks(600);
  store_all(*store, all);

  std::vector<task_filter> filters;
  const auto add = [&](auto&& set) {
    task_filter f = any_filter();
    set(f);
    filters.push_back(f);
  };
  add([](task_filter&) {});
  for (const char* p : {"alpha", "zeta", "nobody"}) add([&](task_filter& f) { f.project = p; });
  for (int s = 0; s < task_status_count; ++s)
    add([&](task_filter& f) { f.status = static_cast<task_status>(s); });
  for (const char* ty : {"resize", "Encode", "encode"}) add([&](task_filter& f) { f.type = ty; });
  for (const char* w : {"w1", "w5", ""}) add([&](task_filter& f) { f.worker = w; });
  add([](task_filter& f) { f.priority_min = 2; });
  add([](task_filter& f) { f.priority_max = -1; });
  add([](task_filter& f) {
    f.priority_min = -2;
    f.priority_max = 2;
  });
  add([](task_filter& f) { f.priority_min = 3, f.priority_max = 2; });  // empty
  const millis c1 = query_base + 123'456'789, c2 = query_base + 654'321'000;
  add([&](task_filter& f) { f.created_from = c1, f.created_to = c2; });
  add([&](task_filter& f) { f.created_from = c1; });
  add([&](task_filter& f) { f.created_to = c1; });
  add([&](task_filter& f) { f.created_from = c1, f.created_to = c1 + 20'000'000; });
  // Bounds on the very times of tasks (ids 300-302 share one), and ranges beside all of them.
  const millis at_300 = query_base + 100 * 2'000'000;
  add([&](task_filter& f) { f.created_from = at_300, f.created_to = at_300 + 2'000'000; });
  add([&](task_filter& f) { f.created_from = at_300, f.created_to = at_300 + 1; });
  add([&](task_filter& f) { f.created_to = at_300; });
  add([&](task_filter& f) { f.created_from = at_300 + 1; });
  add([&](task_filter& f) { f.created_to = query_base; });
  add([&](task_filter& f) { f.created_from = query_base + 1'000'000'000; });
  add([&](task_filter& f) { f.finished_from = c1, f.finished_to = c2; });
  add([&](task_filter& f) { f.finished_from = c2; });
  add([&](task_filter& f) { f.finished_to = c1; });
  add([&](task_filter& f) { f.finished_from = c1, f.finished_to = c1 + 30'000'000; });
  add([&](task_filter& f) { f.finished_from = c2, f.finished_to = c1; });  // empty
  for (const char* text : {"needle", "REPORT", "encode", "report 12", "zzz"})
    add([&](task_filter& f) { f.text = text; });
  add([](task_filter& f) {
    f.project = "beta";
    f.status = task_status::completed;
  });
  add([&](task_filter& f) {
    f.project = "gamma";
    f.type = "mail";
    f.finished_from = c1;
  });
  add([&](task_filter& f) {
    f.worker = "w2";
    f.priority_min = -3;
    f.priority_max = 4;
    f.text = "plain";
  });
  add([&](task_filter& f) {
    f.status = task_status::pending;
    f.created_from = c1;
    f.created_to = c2;
  });
  add([&](task_filter& f) {
    f.type = "crawl";
    f.created_from = c1;
    f.finished_to = c2;
  });
  add([&](task_filter& f) {
    f.status = task_status::dead;
    f.project = "delta";
    f.worker = "w3";
  });
  add([&](task_filter& f) {
    f.status = task_status::failed;
    f.finished_from = c1;
    f.finished_to = c2;
    f.text = "NEEDLE";
  });

  std::set<std::string> plans;
  for (auto f : filters) {
    for (bool oldest : {false, true}) {
      f.oldest_first = oldest;
      const auto expected = reference_ids(all, f);
      const auto page = query(*store, f);
      INFO("filter #" << (&f - &filters[0]) << " oldest " << oldest << " plan "
                      << page.stats.done_plan);
      REQUIRE(ids(page.tasks) == expected);
      REQUIRE(page.next == 0);
      plans.insert(page.stats.done_plan);
      // Pages of 7 give the same tasks, each once.
      task_filter paged = f;
      paged.limit = 7;
      REQUIRE(all_pages(*store, paged) == expected);
    }
  }
  // Every way of finding finished tasks was taken by some query above.
  for (const char* p :
       {"none", "scan", "project", "type", "worker", "status", "finished", "created"}) {
    INFO(p);
    REQUIRE(plans.count(p) == 1);
  }
}

TEST_CASE("cursor paging gives every matching task exactly once, newest or oldest first",
          "[task_store][query]") {
  temp_dir tmp;
  auto store = open_store(tmp.store());
  const auto all = varied_tasks(1500);
  store_all(*store, all);

  for (std::uint32_t page_size : {1u, 13u, 100u, 10000u}) {
    for (bool oldest : {false, true}) {
      std::vector<task_filter> filters(5, any_filter(page_size));
      filters[1].project = "beta";
      filters[2].finished_from = query_base + 200'000'000;
      filters[2].finished_to = query_base + 800'000'000;
      filters[3].status = task_status::completed;
      filters[3].text = "report";
      filters[4].created_from = query_base + 200'000'000;  // ids 300-1049
      filters[4].created_to = query_base + 700'000'000;
      for (auto& f : filters) {
        f.oldest_first = oldest;
        if (page_size == 1 && !f.project) continue;  // keeps the test quick
        const auto expected = reference_ids(all, f);
        INFO("page " << page_size << " oldest " << oldest);
        REQUIRE(all_pages(*store, f) == expected);
      }
    }
  }
  // A cursor in the middle, as a client resuming later would pass it.
  task_filter f = any_filter(5);
  f.after = 700;
  REQUIRE(ids(list(*store, f)) == std::vector<task_id>{699, 698, 697, 696, 695});
  f.oldest_first = true;
  REQUIRE(ids(list(*store, f)) == std::vector<task_id>{701, 702, 703, 704, 705});
  // A cursor outside a created range starts at the range's edge; one inside, after itself.
  f.created_from = query_base + 200'000'000;
  f.created_to = query_base + 700'000'000;
  for (const auto& [oldest, after, expected] :
       {std::tuple{false, task_id{1400}, std::vector<task_id>{1049, 1048, 1047, 1046, 1045}},
        std::tuple{false, task_id{0}, std::vector<task_id>{1049, 1048, 1047, 1046, 1045}},
        std::tuple{false, task_id{302}, std::vector<task_id>{301, 300}},
        std::tuple{false, task_id{300}, std::vector<task_id>{}},
        std::tuple{true, task_id{5}, std::vector<task_id>{300, 301, 302, 303, 304}},
        std::tuple{true, task_id{1047}, std::vector<task_id>{1048, 1049}},
        std::tuple{true, task_id{1200}, std::vector<task_id>{}}}) {
    f.oldest_first = oldest;
    f.after = after;
    INFO("oldest " << oldest << " after " << after);
    REQUIRE(ids(list(*store, f)) == expected);
  }
}

TEST_CASE("with 20,000 finished tasks a selective query reads its index entries, not the store",
          "[task_store][query]") {
  temp_dir tmp;
  auto store = open_store(tmp.store());
  // 20,000 finished tasks, one a second; project "needle" holds every 2000th, type "rare"
  // every 1999th; a few live ones on top.
  constexpr task_id finished_count = 20'000;
  std::vector<task> all;
  for (task_id id = 1; id <= finished_count; ++id) {
    task t = finished_task(id, id % 2000 == 0 ? "needle" : "hay-" + std::to_string(id % 7),
                           id % 3 == 0 ? task_status::failed : task_status::completed,
                           query_base + static_cast<millis>(id) * 1000);
    t.type = id % 1999 == 0 ? "rare" : "common";
    t.worker = "w" + std::to_string(id % 4);
    t.created_at = query_base + static_cast<millis>(id) * 1000 - 500;
    all.push_back(std::move(t));
  }
  for (task_id id = finished_count + 1; id <= finished_count + 5; ++id) {
    all.push_back(make_task(id, "needle"));
    all.back().created_at = query_base + static_cast<millis>(id) * 1000;
  }
  store_all(*store, all);

  task_filter needle = any_filter(100);
  needle.project = "needle";
  auto page = query(*store, needle);
  REQUIRE(page.tasks.size() == 15);
  REQUIRE(page.stats.done_plan == "project");
  REQUIRE(page.stats.index_entries == 10);
  REQUIRE(page.stats.records == 10 + 5);  // its ten finished tasks, and the five live ones

  needle.status = task_status::failed;  // 6000, 12000, 18000
  page = query(*store, needle);
  REQUIRE(ids(page.tasks) == std::vector<task_id>{18000, 12000, 6000});
  REQUIRE(page.stats.done_plan == "project");
  REQUIRE(page.stats.records == 10);

  task_filter rare = any_filter(100);
  rare.type = "rare";
  rare.oldest_first = true;
  page = query(*store, rare);
  REQUIRE(page.tasks.size() == 10);
  REQUIRE(page.tasks.front().id == 1999);
  REQUIRE(page.stats.done_plan == "type");
  REQUIRE(page.stats.index_entries <= 2 * 10);  // the count, then the walk
  REQUIRE(page.stats.records == 10 + 5);

  // Ten seconds of finish times: ten tasks.
  task_filter window = any_filter(100);
  window.finished_from = query_base + 12'345'000;
  window.finished_to = query_base + 12'355'000;
  page = query(*store, window);
  REQUIRE(ids(page.tasks) == std::vector<task_id>{12354, 12353, 12352, 12351, 12350, 12349,
                                                  12348, 12347, 12346, 12345});
  REQUIRE(page.stats.done_plan == "finished");
  REQUIRE(page.stats.records == 10);
  // Entries of the smallest buckets at the edges are read, but far fewer than the tasks.
  REQUIRE(page.stats.index_entries < 1000);

  // Ten seconds of creation times: the ids they cover, found by bisection, and only their
  // records (not even the live tasks', all created later).
  task_filter created = any_filter(100);
  created.created_from = query_base + 12'345'000;
  created.created_to = query_base + 12'355'000;
  page = query(*store, created);
  REQUIRE(ids(page.tasks) == std::vector<task_id>{12355, 12354, 12353, 12352, 12351, 12350, 12349,
                                                  12348, 12347, 12346});
  REQUIRE(page.stats.done_plan == "created");
  REQUIRE(page.stats.records == 10);
  REQUIRE(page.stats.index_entries == 0);
  REQUIRE(page.stats.bisection_records <= 2 * 15);  // two bounds, log2(20,006) < 15 steps each

  // Several usable indexes: the one with the fewest entries is taken, whether its size is
  // known from the counts, counted, or (past the counting cap) estimated.
  const auto plan_of = [&](auto&& set) {
    task_filter f = any_filter(10);
    set(f);
    return query(*store, f).stats.done_plan;
  };
  CHECK(plan_of([](task_filter& f) {
          f.type = "common";  // 19,990: past the cap
          f.worker = "w1";    // 5,000
        }) == "worker");
  CHECK(plan_of([](task_filter& f) {
          f.worker = "w1";
          f.type = "rare";
        }) == "type");
  CHECK(plan_of([](task_filter& f) {
          f.status = task_status::failed;  // 6,666, from the counts
          f.type = "common";
        }) == "status");
  CHECK(plan_of([](task_filter& f) {
          f.project = "needle";
          f.finished_from = query_base;
        }) == "project");
  CHECK(plan_of([](task_filter& f) {
          f.type = "common";
          f.finished_from = query_base + 19'990'000;  // the last ten seconds
        }) == "finished");

  // No filter: the newest page reads one page of records, not the store.
  page = query(*store, any_filter(50));
  REQUIRE(page.tasks.size() == 50);
  REQUIRE(page.stats.done_plan == "scan");
  REQUIRE(page.stats.records == 50);

  // A report's walk: 6000 tasks finished in a range, 1000 a page, oldest first. Every page
  // reads about its own tasks' entries and records, not the range again.
  task_filter report = any_filter(1000);
  report.finished_from = query_base + 5'000'000;
  report.finished_to = query_base + 11'000'000;
  report.oldest_first = true;
  std::size_t records = 0, entries = 0, pages = 0;
  std::vector<task_id> got;
  for (;;) {
    const auto p = query(*store, report);
    REQUIRE(p.stats.done_plan == "finished");
    records += p.stats.records;
    entries += p.stats.index_entries;
    ++pages;
    for (const auto& t : p.tasks) got.push_back(t.id);
    if (p.next == 0) break;
    report.after = p.next;
  }
  std::vector<task_id> expected(6000);
  for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = 5000 + i;
  REQUIRE(got == expected);
  REQUIRE(pages == 7);  // six full pages and the empty one that says "no more"
  REQUIRE(records == 6000);
  REQUIRE(entries < 2 * 6000);
}

TEST_CASE("a store from before the index gets it built at open", "[task_store][query]") {
  temp_dir tmp;
  std::vector<task> done;
  for (task_id id = 1; id <= 50; ++id) {
    task t = finished_task(id, id % 10 == 0 ? "rare" : "common", task_status::completed,
                           query_base + static_cast<millis>(id) * 1000);
    t.worker = "w";
    done.push_back(std::move(t));
  }
  {
    raw_store_writer old(tmp.store(), /*with_idempotency=*/true);
    for (const auto& t : done) old.put(raw_store_writer::done, be64(t.id), version1_record(t));
    old.put(raw_store_writer::done, be64(51), "not a task");  // left out, reported when met
    old.put(raw_store_writer::meta, "counts/common", le64s({0, 0, 46, 0, 0, 0, 0}));
    old.put(raw_store_writer::meta, "counts/rare", le64s({0, 0, 5, 0, 0, 0, 0}));
  }
  {
    auto store = open_store(tmp.store());
    task_filter rare = any_filter();
    rare.project = "rare";
    const auto page = query(*store, rare);
    REQUIRE(ids(page.tasks) == std::vector<task_id>{50, 40, 30, 20, 10});
    REQUIRE(page.stats.done_plan == "project");
    REQUIRE(page.stats.records == 5);
    task_filter window = any_filter();
    window.finished_from = query_base + 20'000;
    window.finished_to = query_base + 23'000;
    REQUIRE(ids(list(*store, window)) == std::vector<task_id>{22, 21, 20});
    // The unreadable record is still there for a scan to report.
    std::vector<task> out;
    task_id next = 0;
    REQUIRE(store->list(any_filter(), out, next).error_code() == status::code::corruption);
  }
  // Opened again: already built, so the entries are the same.
  const auto keys = raw_index_keys(tmp.store());
  REQUIRE(keys.size() == 50 * full_entries);
  { auto store = open_store(tmp.store()); }
  REQUIRE(raw_index_keys(tmp.store()) == keys);
}

TEST_CASE("an index whose build was cut short is built again from scratch", "[task_store][query]") {
  temp_dir tmp;
  {
    raw_store_writer half(tmp.store(), /*with_idempotency=*/true, /*with_index=*/true);
    std::string value;
    task t = finished_task(1, "p", task_status::completed, query_base);
    t.worker = "w";
    protocol::encode_task(t, value);
    half.put(raw_store_writer::done, be64(1), value);
    // An entry of a task that is gone, and no index version: the build did not finish.
    half.put(raw_store_writer::index, std::string("P\0\0\0\x01p", 6) + be64(7), "");
    half.put(raw_store_writer::meta, "counts/p", le64s({0, 0, 1, 0, 0, 0, 0}));
  }
  {
    auto store = open_store(tmp.store());
    task_filter p = any_filter();
    p.project = "p";
    REQUIRE(ids(list(*store, p)) == std::vector<task_id>{1});
  }
  const auto keys = raw_index_keys(tmp.store());
  REQUIRE(keys.size() == full_entries);
  REQUIRE(entries_of(keys, 1) == full_entries);
}

TEST_CASE("with background CPUs set RocksDB's flush thread runs only on them at idle priority") {
  const int last = dispatch::testing::allowed_cpus().back();
  temp_dir tmp;
  {
    std::unique_ptr<task_store> s;
    REQUIRE(task_store::open(store_options{tmp.store(), durability::wal, {last}}, s).is_ok());
    write_batch b;
    b.put_task(make_task(1, "p"), std::nullopt);
    REQUIRE(s->apply(b).is_ok());
  }  // a clean close flushes the memtables, a job of RocksDB's flush thread
  const auto threads = dispatch::testing::thread_cpus(getpid());
  const auto [first, end] = threads.equal_range("rocksdb:high");
  REQUIRE(first != end);
  int pinned = 0;
  for (auto it = first; it != end; ++it)
    pinned += it->second.cpus == std::to_string(last) && it->second.policy == SCHED_IDLE;
  CHECK(pinned >= 1);
}
