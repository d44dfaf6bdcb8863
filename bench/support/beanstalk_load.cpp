#include "bench/support/beanstalk_load.hpp"

#include <poll.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include "bench/support/beanstalk_client.hpp"
#include "bench/support/threads.hpp"

namespace dispatch::bench {

namespace {

using std::chrono::milliseconds;

constexpr int reserve_timeout_s = 1;
constexpr std::uint32_t ttr_s = 60;

// Emulated workers on one thread: `connections` (capacity times workers), each reserving and
// deleting one job at a time.
void run_workers(int port, std::size_t connections, const thread_group& group,
                 completion_counter& done) {
  std::vector<std::unique_ptr<beanstalk_connection>> conns;
  std::vector<pollfd> fds;
  for (std::size_t i = 0; i < connections; ++i) {
    conns.push_back(std::make_unique<beanstalk_connection>(port));
    conns.back()->reserve(reserve_timeout_s);
    conns.back()->flush();
    fds.push_back(pollfd{conns.back()->fd(), POLLIN, 0});
  }
  while (!group.stopping()) {
    if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if ((fds[i].revents & POLLIN) == 0) continue;
      beanstalk_connection& c = *conns[i];
      while (auto r = c.read(milliseconds(0))) {
        switch (r->what) {
          case beanstalk_reply::kind::reserved:
            c.remove(r->id);
            c.reserve(reserve_timeout_s);
            break;
          case beanstalk_reply::kind::deleted:
            done.add(now_ns());
            break;
          case beanstalk_reply::kind::timed_out:
            c.reserve(reserve_timeout_s);
            break;
          default:
            throw std::runtime_error("beanstalkd worker got '" + r->line + "'");
        }
      }
      c.flush();
    }
  }
}

// beanstalkd: 0 is the most urgent priority; ours: higher runs first.
std::uint32_t beanstalk_priority(int ours) {
  return static_cast<std::uint32_t>(priority_levels - 1 - ours);
}

}  // namespace

double run_beanstalk_load(const beanstalk_load& load) {
  thread_group group;
  completion_counter done;
  split_workers(load.workers, max_worker_threads, [&](std::size_t, std::size_t count) {
    group.spawn([&, count] { run_workers(load.port, count * load.capacity, group, done); });
  });

  beanstalk_connection producer(load.port);
  priority_source priorities;
  std::size_t sent = 0, unanswered = 0;
  const std::int64_t start = now_ns();
  while (sent < load.tasks || unanswered > 0) {
    // Keep up to in_flight batches written ahead of their replies.
    while (sent < load.tasks && unanswered + load.batch <= load.batch * load.in_flight) {
      const std::size_t n = std::min(load.batch, load.tasks - sent);
      const std::string body = stamped_payload(load.payload, now_ns());
      for (std::size_t i = 0; i < n; ++i)
        producer.put(beanstalk_priority(priorities.next()), ttr_s, body);
      producer.flush();
      sent += n;
      unanswered += n;
    }
    auto r = producer.read(milliseconds(120'000));
    if (!r) throw std::runtime_error("beanstalkd did not answer a put within 120 s");
    if (r->what != beanstalk_reply::kind::inserted)
      throw std::runtime_error("beanstalkd answered a put with '" + r->line + "'");
    --unanswered;
    group.check();
  }
  const std::int64_t end = done.wait(load.tasks, std::chrono::seconds(60), [&] { group.check(); });
  group.stop();
  return static_cast<double>(end - start) / 1e9;
}

}  // namespace dispatch::bench
