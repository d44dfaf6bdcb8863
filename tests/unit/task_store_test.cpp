// task_store against a real RocksDB, one fresh directory per test.
#include <catch2/catch.hpp>

#include <stdlib.h>  // mkdtemp
#include <unistd.h>  // getpid

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "persistence/task_store.hpp"

namespace fs = std::filesystem;
using namespace dispatch;
using namespace dispatch::persistence;
using Catch::Matchers::Contains;

namespace {

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "task_store_test-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;  // best effort: a leftover temp dir must not fail the test
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const fs::path& path() const { return path_; }
  // The store lives in a subdirectory, so open() also exercises creating it.
  std::string store() const { return (path_ / "store").string(); }

 private:
  fs::path path_;
};

std::unique_ptr<task_store> open_store(const std::string& dir, durability mode = durability::wal) {
  std::unique_ptr<task_store> s;
  const status st = task_store::open(store_options{dir, mode}, s);
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
                          std::uint64_t failed, std::uint64_t dead, std::uint64_t cancelled) {
  return {pending, running, completed, failed, dead, cancelled};
}

// Moves `t` to `to` in its own batch, as the persistence actor would.
void transition(task_store& s, task& t, task_status to) {
  write_batch b;
  const task_status from = t.status;
  t.status = to;
  b.put_task(t, from);
  apply(s, b);
}

std::vector<task> list(task_store& s, const task_filter& f) {
  std::vector<task> out;
  const status st = s.list(f, out);
  INFO(st.to_string());
  REQUIRE(st.is_ok());
  return out;
}

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
    REQUIRE(ids(list(*store, {std::nullopt, task_status::completed, 100})) ==
            std::vector<task_id>{1});

    // A later admin retry brings a finished task back to the live set.
    transition(*store, a, task_status::pending);
  }
  auto store = open_store(tmp.store());
  const auto r = recover(*store);
  REQUIRE(ids(r.live) == std::vector<task_id>{1, 3});
  REQUIRE(r.live[0].status == task_status::pending);
  // Gone from "done": no stale completed copy left behind.
  REQUIRE(list(*store, {std::nullopt, task_status::completed, 100}).empty());
  REQUIRE(ids(list(*store, {std::nullopt, task_status::cancelled, 100})) ==
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
  REQUIRE(ids(list(*store, {std::nullopt, std::nullopt, 3})) == v{10, 9, 8});
  REQUIRE(ids(list(*store, {"a", std::nullopt, 100})) == v{9, 7, 5, 3, 1});
  REQUIRE(ids(list(*store, {"b", std::nullopt, 2})) == v{10, 8});
  REQUIRE(ids(list(*store, {std::nullopt, task_status::pending, 100})) == v{10, 5, 1});
  REQUIRE(ids(list(*store, {std::nullopt, task_status::running, 100})) == v{8, 3});
  REQUIRE(ids(list(*store, {std::nullopt, task_status::completed, 100})) == v{7, 2});
  REQUIRE(ids(list(*store, {"a", task_status::completed, 100})) == v{7});
  REQUIRE(ids(list(*store, {"b", task_status::pending, 1})) == v{10});
  REQUIRE(list(*store, {"c", std::nullopt, 100}).empty());
  REQUIRE(list(*store, {std::nullopt, std::nullopt, 0}).empty());
  const auto newest = list(*store, {std::nullopt, std::nullopt, 1});
  REQUIRE(newest.size() == 1);
  require_same(newest[0], make_task(10, "b", task_status::pending));
}

TEST_CASE("opening the same directory twice fails and names it", "[task_store]") {
  temp_dir tmp;
  auto first = open_store(tmp.store());
  std::unique_ptr<task_store> second;
  const status st = task_store::open(store_options{tmp.store(), durability::wal}, second);
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
  const std::string file = (tmp.path() / "plain-file").string();
  std::ofstream(file) << "not a store";
  std::unique_ptr<task_store> s;

  SECTION("the path is a regular file") {
    const status st = task_store::open(store_options{file, durability::wal}, s);
    REQUIRE(st.error_code() == status::code::io_error);
    REQUIRE(st.message() == "cannot open store in " + file + ": the path exists and is not a directory");
  }
  SECTION("the path is under a regular file") {
    const std::string dir = file + "/store";
    const status st = task_store::open(store_options{dir, durability::wal}, s);
    REQUIRE(st.error_code() == status::code::io_error);
    REQUIRE_THAT(st.message(), Contains("cannot open store in " + dir + ": cannot create the directory"));
  }
  SECTION("the path is under a location nobody can write to") {
    // /proc refuses new directories even to root, so this holds however the tests run.
    const std::string dir = "/proc/dispatch-task-store-test/store";
    const status st = task_store::open(store_options{dir, durability::wal}, s);
    REQUIRE(st.error_code() == status::code::io_error);
    REQUIRE_THAT(st.message(), Contains("cannot open store in " + dir + ": cannot create the directory"));
  }
  SECTION("no directory at all") {
    const status st = task_store::open(store_options{"", durability::wal}, s);
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
  REQUIRE(r.counts.at("a") == make_counts(n / 2, 0, 0, 0, 0, 0));
  REQUIRE(r.counts.at("b") == make_counts(n / 2, 0, 0, 0, 0, 0));
  REQUIRE(ids(list(*store, {"a", task_status::pending, 2})) == std::vector<task_id>{9999, 9997});
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
