#include "bench/support/producer.hpp"

#include <algorithm>
#include <stdexcept>

#include "bench/support/pacing.hpp"

namespace dispatch::bench {

namespace {

using std::chrono::milliseconds;

// Reads one reply within `timeout` and checks that it acknowledges a submit; false if none came.
bool take_ack(wire_client& producer, milliseconds timeout) {
  auto r = producer.receive(timeout);
  if (!r) return false;
  expect<protocol::submitted>(*r);
  return true;
}

}  // namespace

submit_timing submit_all(wire_client& producer, std::size_t tasks, std::size_t batch,
                         std::size_t in_flight, std::size_t payload, priority_source& priorities) {
  submit_timing t;
  std::size_t sent = 0, outstanding = 0;
  while (sent < tasks || outstanding > 0) {
    while (sent < tasks && outstanding < in_flight) {
      const std::size_t n = std::min(batch, tasks - sent);
      auto specs = make_specs(n, payload, priorities);
      if (t.first_send_ns == 0) t.first_send_ns = now_ns();
      producer.send(protocol::submit{std::move(specs)});
      sent += n;
      ++outstanding;
    }
    if (!take_ack(producer, milliseconds(120'000)))
      throw std::runtime_error("no answer to a submit within 120 s");
    --outstanding;
  }
  t.last_ack_ns = now_ns();
  return t;
}

submit_timing submit_paced(wire_client& producer, double rate, std::size_t tasks,
                           std::size_t payload, priority_source& priorities) {
  submit_timing t;
  std::size_t submits = 0, acked = 0;
  t.first_send_ns = now_ns();
  pace(
      rate, tasks,
      [&](std::size_t n) {
        producer.send(protocol::submit{make_specs(n, payload, priorities)});
        ++submits;
      },
      [&] {
        while (take_ack(producer, milliseconds(0))) ++acked;
      });
  while (acked < submits) {
    if (!take_ack(producer, milliseconds(120'000)))
      throw std::runtime_error("no answer to a submit within 120 s");
    ++acked;
  }
  t.last_ack_ns = now_ns();
  return t;
}

}  // namespace dispatch::bench
