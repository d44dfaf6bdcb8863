#include "bench/support/worker_fleet.hpp"

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

#include "bench/support/process.hpp"
#include "bench/support/wire_client.hpp"
#include "bench/support/workload.hpp"

namespace dispatch::bench {

namespace {

using std::chrono::milliseconds;

// One worker connection and what its loop needs to know about it.
struct session {
  std::unique_ptr<wire_client> wire;
  bool registered = false;
  bool fetch_outstanding = false;
  std::chrono::milliseconds heartbeat{1000};
  bench_clock::time_point next_heartbeat;
  // Reports (or completes) in flight: request id -> submit stamps of their tasks (0 when not
  // recorded).
  std::unordered_map<std::uint64_t, std::vector<std::int64_t>> reports;
};

}  // namespace

worker_fleet::worker_fleet(zmq::context_t& context, fleet_options options)
    : context_(context), options_(std::move(options)) {
  split_workers(options_.workers, options_.threads, [this](std::size_t first, std::size_t count) {
    threads_.spawn([this, first, count] { run(first, count); });
  });
  const bool all =
      wait_until([&] { return threads_.stopping() || registered_.load() == options_.workers; },
                 std::chrono::seconds(300), milliseconds(2));
  if (!all || registered_.load() < options_.workers) {
    threads_.stop();  // rethrows a worker's error if there is one
    throw std::runtime_error("workers did not register within 300 s");
  }
}

std::int64_t worker_fleet::wait_completed(std::uint64_t n, std::chrono::seconds stall) {
  return completed_.wait(n, stall, [this] { threads_.check(); });
}

latency_samples worker_fleet::take_latencies() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::move(latencies_);
}

void worker_fleet::run(std::size_t first, std::size_t count) {
  latency_samples local;
  // Whatever happens, this thread's samples join the others.
  struct flush_samples {
    worker_fleet& fleet;
    latency_samples& local;
    ~flush_samples() {
      std::lock_guard<std::mutex> lock(fleet.mutex_);
      fleet.latencies_.append(local);
    }
  } flush{*this, local};
  std::vector<session> sessions(count);
  std::vector<zmq::pollitem_t> items(count);
  for (std::size_t i = 0; i < count; ++i) {
    sessions[i].wire = std::make_unique<wire_client>(context_, options_.endpoint, options_.token);
    protocol::register_worker reg;
    reg.worker = options_.id_prefix + "-" + std::to_string(first + i);
    reg.types = {std::string(bench_type)};
    reg.capacity = options_.capacity;
    sessions[i].wire->send(std::move(reg));
    items[i] = zmq::pollitem_t{sessions[i].wire->socket().handle(), 0, ZMQ_POLLIN, 0};
  }

  while (!threads_.stopping()) {
    auto now = bench_clock::now();
    auto wake = now + milliseconds(20);  // the stop flag is checked at least this often
    for (auto& s : sessions) {
      if (!s.registered) continue;
      if (options_.fetch && !s.fetch_outstanding) {
        s.wire->send(protocol::fetch{options_.capacity, options_.wait_ms});
        s.fetch_outstanding = true;
      }
      if (now >= s.next_heartbeat) {
        s.wire->send(protocol::heartbeat{});
        s.next_heartbeat = now + s.heartbeat;
      }
      wake = std::min(wake, s.next_heartbeat);
    }
    const auto timeout = std::chrono::duration_cast<milliseconds>(wake - now);
    zmq::poll(items.data(), items.size(), std::max(timeout, milliseconds(0)));

    for (std::size_t i = 0; i < count; ++i) {
      if ((items[i].revents & ZMQ_POLLIN) == 0) continue;
      session& s = sessions[i];
      // Drain everything this connection has, without waiting.
      while (auto r = s.wire->receive(milliseconds(0))) {
        now = bench_clock::now();
        if (const auto* reg = std::get_if<protocol::registered>(&r->body)) {
          s.registered = true;
          s.heartbeat = milliseconds(reg->heartbeat_ms);
          s.next_heartbeat = now + s.heartbeat;
          registered_.fetch_add(1);
        } else if (const auto* got = std::get_if<protocol::jobs>(&r->body)) {
          s.fetch_outstanding = false;
          if (got->jobs.empty()) continue;
          const std::int64_t at = now_ns();
          std::int64_t none = 0;
          first_job_ns_.compare_exchange_strong(none, at);
          received_.fetch_add(got->jobs.size(), std::memory_order_relaxed);
          // Every job of a fetch finishes at once here, so one report carries them all, as a
          // worker agent reports the jobs that finished together (or, with complete_each, one
          // complete per job).
          protocol::report done;
          std::vector<std::int64_t> stamps;
          for (const auto& job : got->jobs) {
            std::int64_t stamp = 0;
            if (options_.record_latency) {
              stamp = payload_stamp(job.payload);
              local.held(stamp, at);
            }
            if (options_.complete_each) {
              s.reports.emplace(s.wire->send(protocol::complete{job.task, job.attempt, {}}),
                                std::vector<std::int64_t>{stamp});
            } else {
              done.results.push_back({job.task, job.attempt, false, {}, {}, true});
              stamps.push_back(stamp);
            }
          }
          if (!done.results.empty())
            s.reports.emplace(s.wire->send(std::move(done)), std::move(stamps));
        } else if (std::holds_alternative<protocol::ok>(r->body) ||
                   std::holds_alternative<protocol::reported>(r->body)) {
          const auto it = s.reports.find(r->id);
          if (it == s.reports.end()) continue;
          if (const auto* answer = std::get_if<protocol::reported>(&r->body);
              answer && !answer->refused.empty())
            throw std::runtime_error("worker " + std::to_string(first + i) + ": task " +
                                     std::to_string(answer->refused.front().task) +
                                     " refused: " + answer->refused.front().message);
          const std::int64_t at = now_ns();
          if (options_.record_latency)
            for (const auto stamp : it->second) local.done(stamp, at);
          completed_.add(at, it->second.size());
          s.reports.erase(it);
        } else if (const auto* e = std::get_if<protocol::error>(&r->body)) {
          throw std::runtime_error("worker " + std::to_string(first + i) + " got error " +
                                   std::string(protocol::to_string(e->code)) + ": " + e->message);
        }
      }
    }
  }
  // Leave as a real worker does, so that the daemon is not left with held tasks of workers it
  // must first declare lost. Best effort: the answers are not awaited.
  for (auto& s : sessions)
    if (s.registered) s.wire->send(protocol::goodbye{});
}

}  // namespace dispatch::bench
