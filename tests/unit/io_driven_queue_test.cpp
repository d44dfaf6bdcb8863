// The scheduler queue whose first thread serves an io_loop while it has no job. The loop here is
// an eventfd the test writes to as "input"; the daemon's real loop (the ZeroMQ sockets) runs under
// every integration test.
#include "actors/io_driven_queue.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using dispatch::actors::io_driven_queue;
using namespace std::chrono_literals;

// Jobs are opaque to the queue: distinct addresses stand in for actors.
struct jobs {
  int slots[16] = {};
  caf::resumable* operator[](int i) { return reinterpret_cast<caf::resumable*>(&slots[i]); }
};

class eventfd_loop final : public dispatch::io_loop {
 public:
  eventfd_loop() : input_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) { REQUIRE(input_ >= 0); }
  ~eventfd_loop() override { ::close(input_); }

  void give_input() {
    const std::uint64_t one = 1;
    REQUIRE(::write(input_, &one, sizeof one) == sizeof one);
  }

  bool wait(bool block, int wake_fd) override {
    ++waits;
    fds_[0] = {input_, POLLIN, 0};
    fds_[1] = {wake_fd, POLLIN, 0};
    if (::poll(fds_, 2, block ? -1 : 0) < 0) return false;
    return fds_[1].revents & POLLIN;
  }
  bool output_waiting() const override { return output; }
  void handle() override {
    if (output.exchange(false)) {
      std::lock_guard<std::mutex> lock(mutex);
      log.push_back("sent");
    }
    if (!(fds_[0].revents & POLLIN)) return;
    std::uint64_t count = 0;
    if (::read(input_, &count, sizeof count) == sizeof count) handled += static_cast<int>(count);
    std::lock_guard<std::mutex> lock(mutex);
    handled_on = std::this_thread::get_id();
  }
  bool send_output_now() override {
    if (output.exchange(false)) {
      std::lock_guard<std::mutex> lock(mutex);
      log.push_back("sent now");
    }
    pollfd input{input_, POLLIN, 0};
    return ::poll(&input, 1, 0) == 0;  // no input waiting
  }
  void close() override {
    std::lock_guard<std::mutex> lock(mutex);
    closed_on = std::this_thread::get_id();
  }

  std::atomic<int> waits{0};
  std::atomic<int> handled{0};
  std::atomic<bool> output{false};  // "replies queued"; handle() sends them
  std::mutex mutex;
  std::vector<std::string> log;  // guarded by mutex
  std::thread::id handled_on;  // guarded by mutex
  std::thread::id closed_on;   // guarded by mutex

 private:
  int input_;
  pollfd fds_[2] = {};
};

// Polls `done` until it holds; fails the test after a generous bound instead of hanging it.
void eventually(const std::function<bool()>& done) {
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (!done()) {
    REQUIRE(std::chrono::steady_clock::now() < give_up);
    std::this_thread::sleep_for(1ms);
  }
}

}  // namespace

TEST_CASE("io_driven_queue hands jobs pushed by another thread to the waiting thread in order") {
  io_driven_queue queue;
  jobs job;
  std::vector<caf::resumable*> got;
  std::thread consumer([&] {
    for (int i = 0; i < 10; ++i) got.push_back(queue.pop(true));
  });
  for (int i = 0; i < 10; ++i) {
    if (i % 3 == 0) std::this_thread::sleep_for(1ms);  // some pushes find the consumer asleep
    queue.push(job[i]);
  }
  consumer.join();
  REQUIRE(got.size() == 10);
  for (int i = 0; i < 10; ++i) CHECK(got[i] == job[i]);
}

TEST_CASE("io_driven_queue serves the io loop on the popping thread while it has no job") {
  io_driven_queue queue;
  eventfd_loop loop;
  jobs job;
  std::atomic<int> popped{0};
  std::thread::id serving;
  std::thread server([&] {
    serving = std::this_thread::get_id();
    while (queue.pop(true) != job[15]) ++popped;
  });
  queue.attach(loop);
  for (int i = 0; i < 3; ++i) {
    loop.give_input();
    eventually([&] { return loop.handled == i + 1; });
  }
  {
    std::lock_guard<std::mutex> lock(loop.mutex);
    CHECK(loop.handled_on == serving);
  }
  // Idle with the loop attached: the thread sleeps in the loop's wait instead of spinning.
  const int waits_before = loop.waits;
  std::this_thread::sleep_for(50ms);
  CHECK(loop.waits - waits_before <= 1);

  // A job from another thread wakes it out of the loop's blocking wait.
  queue.push(job[0]);
  eventually([&] { return popped == 1; });

  queue.detach();
  {
    std::lock_guard<std::mutex> lock(loop.mutex);
    CHECK(loop.closed_on == serving);
  }
  const int waits_after_detach = loop.waits;
  loop.give_input();
  queue.push(job[1]);
  eventually([&] { return popped == 2; });
  CHECK(loop.waits == waits_after_detach);  // detached: never used again
  queue.push(job[15]);
  server.join();
  queue.detach();  // nothing attached any more: returns at once
}

TEST_CASE("io_driven_queue still serves the io loop while jobs keep coming") {
  io_driven_queue queue;
  eventfd_loop loop;
  jobs job;
  std::atomic<bool> stop{false};
  std::thread server([&] {
    // Every job popped is queued again at once: the queue is never empty.
    for (;;) {
      auto* next = queue.pop(true);
      if (next == job[15]) return;
      queue.push(stop ? job[15] : next);
    }
  });
  queue.push(job[0]);
  queue.attach(loop);
  loop.give_input();
  eventually([&] { return loop.handled == 1; });
  queue.detach();
  stop = true;
  server.join();
}

TEST_CASE("io_driven_queue lets another thread take jobs while the serving thread is busy") {
  io_driven_queue queue;
  eventfd_loop loop;
  queue.attach(loop);
  jobs job;
  std::mutex mutex;
  std::vector<std::thread::id> runners;  // guarded by mutex
  std::atomic<bool> release{false};
  auto run = [&](bool serves_io) {
    for (;;) {
      auto* next = queue.pop(serves_io);
      if (next == job[15]) {  // the stop sign: passed on to the other thread
        queue.push(next);
        return;
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        runners.push_back(std::this_thread::get_id());
      }
      // The first job holds its thread until the second has run: it can only run elsewhere.
      if (next == job[0])
        while (!release) std::this_thread::sleep_for(1ms);
      else
        release = true;
    }
  };
  std::thread server(run, true);
  std::thread other(run, false);
  queue.push(job[0]);
  eventually([&] {
    std::lock_guard<std::mutex> lock(mutex);
    return runners.size() == 1;
  });
  queue.push(job[1]);
  eventually([&] { return release.load(); });
  {
    std::lock_guard<std::mutex> lock(mutex);
    REQUIRE(runners.size() == 2);
    CHECK(runners[0] != runners[1]);
  }
  queue.detach();
  queue.push(job[15]);
  server.join();
  other.join();
}

TEST_CASE("io_driven_queue sends waiting output before the next job") {
  io_driven_queue queue;
  eventfd_loop loop;
  jobs job;
  queue.attach(loop);
  queue.push(job[0]);
  queue.push(job[1]);
  queue.push(job[15]);
  std::thread server([&] {
    for (;;) {
      auto* next = queue.pop(true);
      if (next == job[15]) return;
      std::lock_guard<std::mutex> lock(loop.mutex);
      loop.log.push_back(next == job[0] ? "job 0" : "job 1");
      if (next == job[0]) loop.output = true;  // job 0 queued replies
    }
  });
  server.join();
  std::lock_guard<std::mutex> lock(loop.mutex);
  CHECK(loop.log == std::vector<std::string>{"job 0", "sent", "job 1"});
}

TEST_CASE("io_driven_queue sends output at once only from a job on the serving thread") {
  io_driven_queue queue;
  eventfd_loop loop;
  jobs job;
  queue.attach(loop);
  std::atomic<int> answers{-1};  // the job's: 0 false, 1 true
  std::thread server([&] {
    for (;;) {
      auto* next = queue.pop(true);
      if (next == job[15]) return;
      loop.output = true;  // the job queued replies, then asks for them to go now
      if (next == job[1]) loop.give_input();  // a request arrives meanwhile
      answers = queue.send_output_now() ? 1 : 0;
    }
  });
  queue.push(job[0]);
  eventually([&] { return answers != -1; });
  CHECK(answers == 1);  // sent, and no input waiting
  {
    std::lock_guard<std::mutex> lock(loop.mutex);
    REQUIRE(!loop.log.empty());
    CHECK(loop.log.front() == "sent now");
  }

  // Input waiting: sent all the same, but the job hears that someone waits.
  answers = -1;
  queue.push(job[1]);
  eventually([&] { return answers != -1; });
  CHECK(answers == 0);

  // Another thread may not touch the loop: nothing is sent.
  loop.output = true;
  CHECK_FALSE(queue.send_output_now());
  CHECK(loop.output);
  queue.detach();
  queue.push(job[15]);
  server.join();
}
