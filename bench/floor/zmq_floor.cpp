#include "bench/floor/zmq_floor.hpp"

#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "bench/support/process.hpp"
#include "bench/support/threads.hpp"
#include "bench/support/workload.hpp"

namespace dispatch::bench {

namespace {

using std::chrono::milliseconds;

// Frame kinds: the first byte of every frame.
constexpr char submit_frame = 'S', ack_frame = 'A', fetch_frame = 'F', jobs_frame = 'J',
               complete_frame = 'C', ok_frame = 'K';

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
        case complete_frame:
          send_to(router, peer, std::string(1, ok_frame));
          break;
        default:
          throw std::runtime_error("broker: unknown frame");
      }
    }
  }
}

void run_worker(zmq::context_t& context, const std::string& endpoint, std::size_t payload,
                const thread_group& group, completion_counter& done) {
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(endpoint);
  const std::string fetch(1, fetch_frame);
  std::string complete(1 + 8, complete_frame);
  dealer.send(zmq::buffer(fetch), zmq::send_flags::none);
  zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
  while (!group.stopping()) {
    if (zmq::poll(&item, 1, milliseconds(20)) == 0) continue;
    zmq::message_t msg;
    while (dealer.recv(msg, zmq::recv_flags::dontwait)) {
      const char* data = msg.data<char>();
      if (data[0] == ok_frame) {
        done.add(now_ns());
      } else if (data[0] == jobs_frame) {
        // One complete per job, each carrying an id, like the protocol's complete.
        for (std::size_t at = 1; at + payload <= msg.size(); at += payload) {
          std::memcpy(complete.data() + 1, data + at, 8);
          dealer.send(zmq::buffer(complete), zmq::send_flags::none);
        }
        dealer.send(zmq::buffer(fetch), zmq::send_flags::none);
      }
    }
  }
}

}  // namespace

double run_zmq_floor(const zmq_floor_load& load) {
  zmq::context_t context(2);
  zmq::socket_t router(context, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.set(zmq::sockopt::sndhwm, 0);
  router.set(zmq::sockopt::rcvhwm, 0);
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_ports(1)[0]);
  router.bind(endpoint);

  thread_group group;
  completion_counter done;
  group.spawn([&] { run_broker(router, load.payload, load.capacity, group); });
  for (std::size_t w = 0; w < load.workers; ++w)
    group.spawn([&] { run_worker(context, endpoint, load.payload, group, done); });

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

}  // namespace dispatch::bench
