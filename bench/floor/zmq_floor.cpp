#include "bench/floor/zmq_floor.hpp"

#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "bench/support/pacing.hpp"
#include "bench/support/process.hpp"
#include "bench/support/threads.hpp"
#include "bench/support/workload.hpp"

namespace dispatch::bench {

namespace {

using std::chrono::milliseconds;

// Frame kinds: the first byte of every frame.
constexpr char submit_frame = 'S', ack_frame = 'A', fetch_frame = 'F', jobs_frame = 'J',
               complete_frame = 'C', ok_frame = 'K';

std::int64_t stamp_at(const char* p) { return payload_stamp(std::string_view(p, 8)); }

void send_to(zmq::socket_t& router, const zmq::message_t& peer, const std::string& body) {
  router.send(zmq::buffer(peer.data(), peer.size()), zmq::send_flags::sndmore);
  router.send(zmq::buffer(body), zmq::send_flags::none);
}

// The broker: a FIFO of payloads and the workers waiting for some.
void run_broker(zmq::socket_t& router, std::size_t payload, std::uint32_t capacity,
                const thread_group& group) {
  std::deque<std::string> queue;
  std::deque<std::string> waiting;  // routing ids of workers with a fetch outstanding
  std::string reply;
  const auto serve = [&](const std::string& peer) {
    reply.assign(1, jobs_frame);
    for (std::uint32_t i = 0; i < capacity && !queue.empty(); ++i) {
      reply += queue.front();
      queue.pop_front();
    }
    router.send(zmq::buffer(peer), zmq::send_flags::sndmore);
    router.send(zmq::buffer(reply), zmq::send_flags::none);
  };
  zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
  while (!group.stopping()) {
    if (zmq::poll(&item, 1, milliseconds(20)) == 0) continue;
    zmq::message_t peer, body;
    while (router.recv(peer, zmq::recv_flags::dontwait)) {
      if (!router.recv(body)) throw std::runtime_error("broker: frame missing");
      const char* data = body.data<char>();
      switch (body.size() > 0 ? data[0] : 0) {
        case submit_frame:
          for (std::size_t at = 1; at + payload <= body.size(); at += payload)
            queue.emplace_back(data + at, payload);
          send_to(router, peer, std::string(1, ack_frame));
          while (!waiting.empty() && !queue.empty()) {
            serve(waiting.front());
            waiting.pop_front();
          }
          break;
        case fetch_frame:
          if (queue.empty())
            waiting.emplace_back(peer.data<char>(), peer.size());
          else
            serve(std::string(peer.data<char>(), peer.size()));
          break;
        case complete_frame:  // the ok names the completed jobs, as the protocol's does
          reply.assign(1, ok_frame);
          reply.append(data + 1, body.size() - 1);
          send_to(router, peer, reply);
          break;
        default:
          throw std::runtime_error("broker: unknown frame");
      }
    }
  }
}

// Per fetch, one complete frame per job (`record` null: the throughput floor) or, recording
// latencies, one for all the jobs of the fetch, like the latency section's `report`. A complete
// carries the 8-byte stamps that open its payloads.
void run_worker(zmq::context_t& context, const std::string& endpoint, std::size_t payload,
                const thread_group& group, completion_counter& done, latency_samples* record) {
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(endpoint);
  const std::string fetch(1, fetch_frame);
  std::string complete;
  dealer.send(zmq::buffer(fetch), zmq::send_flags::none);
  zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
  while (!group.stopping()) {
    if (zmq::poll(&item, 1, milliseconds(20)) == 0) continue;
    zmq::message_t msg;
    while (dealer.recv(msg, zmq::recv_flags::dontwait)) {
      const char* data = msg.data<char>();
      const std::int64_t at = now_ns();
      if (data[0] == ok_frame) {
        const std::size_t jobs = (msg.size() - 1) / 8;
        done.add(at, jobs);
        for (std::size_t j = 0; record && j < jobs; ++j)
          record->done(stamp_at(data + 1 + 8 * j), at);
      } else if (data[0] == jobs_frame) {
        complete.assign(1, complete_frame);
        for (std::size_t at_job = 1; at_job + payload <= msg.size(); at_job += payload) {
          complete.append(data + at_job, 8);
          if (record) {
            record->held(stamp_at(data + at_job), at);
          } else {
            dealer.send(zmq::buffer(complete), zmq::send_flags::none);
            complete.resize(1);
          }
        }
        if (record) dealer.send(zmq::buffer(complete), zmq::send_flags::none);
        dealer.send(zmq::buffer(fetch), zmq::send_flags::none);
      }
    }
  }
}

// The broker's ROUTER, bound to a free loopback port (`endpoint`), with no queue limits.
zmq::socket_t broker_socket(zmq::context_t& context, std::string& endpoint) {
  zmq::socket_t router(context, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.set(zmq::sockopt::sndhwm, 0);
  router.set(zmq::sockopt::rcvhwm, 0);
  endpoint = "tcp://127.0.0.1:" + std::to_string(free_ports(1)[0]);
  router.bind(endpoint);
  return router;
}

}  // namespace

double run_zmq_floor(const zmq_floor_load& load) {
  zmq::context_t context(2);
  std::string endpoint;
  zmq::socket_t router = broker_socket(context, endpoint);

  thread_group group;
  completion_counter done;
  group.spawn([&] { run_broker(router, load.payload, load.capacity, group); });
  for (std::size_t w = 0; w < load.workers; ++w)
    group.spawn([&] { run_worker(context, endpoint, load.payload, group, done, nullptr); });

  zmq::socket_t producer(context, zmq::socket_type::dealer);
  producer.set(zmq::sockopt::linger, 0);
  producer.connect(endpoint);
  std::size_t sent = 0, outstanding = 0;
  const std::int64_t start = now_ns();
  std::string frame;
  while (sent < load.tasks || outstanding > 0) {
    while (sent < load.tasks && outstanding < load.in_flight) {
      const std::size_t n = std::min(load.batch, load.tasks - sent);
      const std::string body = stamped_payload(load.payload, now_ns());
      frame.assign(1, submit_frame);
      for (std::size_t i = 0; i < n; ++i) frame += body;
      producer.send(zmq::buffer(frame), zmq::send_flags::none);
      sent += n;
      ++outstanding;
    }
    zmq::pollitem_t item{producer.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, milliseconds(60'000)) == 0)
      throw std::runtime_error("zmq floor: no ack within 60 s");
    zmq::message_t ack;
    if (producer.recv(ack, zmq::recv_flags::dontwait)) --outstanding;
    group.check();
  }
  const std::int64_t end = done.wait(load.tasks, std::chrono::seconds(60), [&] { group.check(); });
  group.stop();
  return static_cast<double>(end - start) / 1e9;
}

latency_samples run_zmq_latency_floor(const zmq_latency_load& load) {
  zmq::context_t broker_context(1);
  std::string endpoint;
  zmq::socket_t router = broker_socket(broker_context, endpoint);

  zmq::context_t context(2);  // the clients', like the latency section's
  thread_group group;
  completion_counter done;
  std::vector<latency_samples> recorded(load.workers);
  group.spawn([&] { run_broker(router, load.payload, load.capacity, group); });
  for (auto& record : recorded)
    group.spawn([&] { run_worker(context, endpoint, load.payload, group, done, &record); });

  zmq::socket_t producer(context, zmq::socket_type::dealer);
  producer.set(zmq::sockopt::linger, 0);
  producer.connect(endpoint);
  std::string frame;
  zmq::message_t ack;
  pace(
      load.rate, load.tasks,
      [&](std::size_t n) {
        const std::string body = stamped_payload(load.payload, now_ns());
        frame.assign(1, submit_frame);
        for (std::size_t i = 0; i < n; ++i) frame += body;
        producer.send(zmq::buffer(frame), zmq::send_flags::none);
      },
      [&] {
        while (producer.recv(ack, zmq::recv_flags::dontwait)) {
        }
        group.check();
      });
  done.wait(load.tasks, std::chrono::seconds(60), [&] { group.check(); });
  group.stop();
  latency_samples all;
  for (const auto& r : recorded) all.append(r);
  return all;
}

}  // namespace dispatch::bench
