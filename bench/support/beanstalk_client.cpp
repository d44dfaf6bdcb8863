#include "bench/support/beanstalk_client.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace dispatch::bench {

beanstalk_connection::beanstalk_connection(int port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd_);
    throw std::runtime_error("cannot connect to beanstalkd on port " + std::to_string(port) + ": " +
                             std::strerror(errno));
  }
  // Small pipelined commands must not wait for Nagle's algorithm (ZeroMQ sets this too).
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

beanstalk_connection::~beanstalk_connection() {
  if (fd_ >= 0) ::close(fd_);
}

void beanstalk_connection::put(std::uint32_t priority, std::uint32_t ttr_s, std::string_view data) {
  out_ += "put ";
  out_ += std::to_string(priority);
  out_ += " 0 ";
  out_ += std::to_string(ttr_s);
  out_ += ' ';
  out_ += std::to_string(data.size());
  out_ += "\r\n";
  out_ += data;
  out_ += "\r\n";
}

void beanstalk_connection::reserve(int timeout_s) {
  out_ += "reserve-with-timeout ";
  out_ += std::to_string(timeout_s);
  out_ += "\r\n";
}

void beanstalk_connection::remove(std::uint64_t id) {
  out_ += "delete ";
  out_ += std::to_string(id);
  out_ += "\r\n";
}

void beanstalk_connection::flush() {
  std::size_t done = 0;
  while (done < out_.size()) {
    const ssize_t n = ::send(fd_, out_.data() + done, out_.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("beanstalkd write failed: ") + std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
  out_.clear();
}

bool beanstalk_connection::fill(std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  const int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (ready == 0) return false;
  if (ready < 0) {
    if (errno == EINTR) return false;
    throw std::runtime_error("poll() failed");
  }
  if (in_pos_ > 0 && in_pos_ * 2 > in_.size()) {
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
  std::array<char, 65536> buffer;
  const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
  if (n == 0) throw std::runtime_error("beanstalkd closed the connection");
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN) return false;
    throw std::runtime_error(std::string("beanstalkd read failed: ") + std::strerror(errno));
  }
  in_.append(buffer.data(), static_cast<std::size_t>(n));
  return true;
}

std::optional<beanstalk_reply> beanstalk_connection::parse() {
  const std::size_t end = in_.find("\r\n", in_pos_);
  if (end == std::string::npos) return std::nullopt;
  beanstalk_reply r;
  r.line = in_.substr(in_pos_, end - in_pos_);
  std::size_t next = end + 2;
  const auto number_after = [&](std::size_t prefix, std::size_t* stop) {
    char* e = nullptr;
    const auto v = std::strtoull(r.line.c_str() + prefix, &e, 10);
    if (stop != nullptr) *stop = static_cast<std::size_t>(e - r.line.c_str());
    return v;
  };
  if (r.line.rfind("INSERTED ", 0) == 0) {
    r.what = beanstalk_reply::kind::inserted;
    r.id = number_after(9, nullptr);
  } else if (r.line.rfind("RESERVED ", 0) == 0) {
    std::size_t after_id = 0;
    r.id = number_after(9, &after_id);
    const std::size_t bytes = number_after(after_id, nullptr);
    if (in_.size() < next + bytes + 2) return std::nullopt;  // the body is still coming
    r.what = beanstalk_reply::kind::reserved;
    r.data = in_.substr(next, bytes);
    next += bytes + 2;
  } else if (r.line == "DELETED") {
    r.what = beanstalk_reply::kind::deleted;
  } else if (r.line == "TIMED_OUT") {
    r.what = beanstalk_reply::kind::timed_out;
  }
  in_pos_ = next;
  return r;
}

std::optional<beanstalk_reply> beanstalk_connection::read(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (auto r = parse()) return r;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (!fill(std::max(left, std::chrono::milliseconds(0))) && left.count() <= 0)
      return std::nullopt;
  }
}

}  // namespace dispatch::bench
