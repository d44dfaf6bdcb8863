// The message a job thread sends to the agent loop over the inproc PUSH/PULL pair when a job
// ends. Each job thread owns its PUSH socket; the loop owns the single PULL socket.
#pragma once

#include <zmq.hpp>

#include "worker-agent/agent.hpp"

namespace dispatch::worker {

struct finished_job {
  task_id task = 0;
  std::uint32_t attempt = 0;
  job_outcome outcome;
};

// Blocking send of two frames (a fixed-size header, then the outcome's data).
void send_result(zmq::socket_t& push, const finished_job& r);

// Reads one message if available; false when none is waiting or the message is malformed
// (which cannot happen between our own threads, but is checked rather than trusted).
bool receive_result(zmq::socket_t& pull, finished_job& out);

}  // namespace dispatch::worker
