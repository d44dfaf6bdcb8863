#include "worker-agent/result_channel.hpp"

#include <array>
#include <cstring>
#include <vector>

#include <zmq_addon.hpp>

namespace dispatch::worker {
namespace {

// task (8) | attempt (4) | ok (1) | retryable (1), host byte order: both ends are this process.
constexpr std::size_t header_size = 8 + 4 + 1 + 1;

}  // namespace

void send_result(zmq::socket_t& push, const finished_job& r) {
  std::array<char, header_size> header{};
  std::memcpy(header.data(), &r.task, 8);
  std::memcpy(header.data() + 8, &r.attempt, 4);
  header[12] = r.outcome.ok ? 1 : 0;
  header[13] = r.outcome.retryable ? 1 : 0;
  push.send(zmq::buffer(header), zmq::send_flags::sndmore);
  push.send(zmq::buffer(r.outcome.data), zmq::send_flags::none);
}

bool receive_result(zmq::socket_t& pull, finished_job& out) {
  std::vector<zmq::message_t> frames;
  if (!zmq::recv_multipart(pull, std::back_inserter(frames), zmq::recv_flags::dontwait))
    return false;
  if (frames.size() != 2 || frames[0].size() != header_size) return false;
  const auto* header = frames[0].data<char>();
  std::memcpy(&out.task, header, 8);
  std::memcpy(&out.attempt, header + 8, 4);
  out.outcome.ok = header[12] != 0;
  out.outcome.retryable = header[13] != 0;
  out.outcome.data = frames[1].to_string();
  return true;
}

}  // namespace dispatch::worker
