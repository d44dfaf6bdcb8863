// A small client of beanstalkd's text protocol over TCP, written for the comparison:
//   put <pri> <delay> <ttr> <bytes>\r\n<data>\r\n  -> INSERTED <id>\r\n
//   reserve-with-timeout <s>\r\n                     -> RESERVED <id> <bytes>\r\n<data>\r\n |
//   TIMED_OUT\r\n delete <id>\r\n                                  -> DELETED\r\n
// Commands are buffered and written by flush(), so a caller can pipeline many in one write;
// beanstalkd answers the commands of a connection in order.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dispatch::bench {

struct beanstalk_reply {
  enum class kind { inserted, reserved, deleted, timed_out, other };
  kind what = kind::other;
  std::uint64_t id = 0;  // INSERTED and RESERVED
  std::string data;      // RESERVED: the job body
  std::string line;      // the reply line without \r\n (for error messages)
};

class beanstalk_connection {
 public:
  explicit beanstalk_connection(int port);  // 127.0.0.1:port; throws if it cannot connect
  ~beanstalk_connection();
  beanstalk_connection(const beanstalk_connection&) = delete;
  beanstalk_connection& operator=(const beanstalk_connection&) = delete;

  void put(std::uint32_t priority, std::uint32_t ttr_s, std::string_view data);
  void reserve(int timeout_s);
  void remove(std::uint64_t id);  // "delete"
  // Writes every buffered command (blocking until the kernel took them).
  void flush();
  // The next reply, waiting up to `timeout` for more bytes; nullopt when it is not complete by
  // then. Throws when the server closes the connection.
  std::optional<beanstalk_reply> read(std::chrono::milliseconds timeout);

  int fd() const { return fd_; }

 private:
  // A complete reply at the front of in_, consumed; nullopt if more bytes are needed.
  std::optional<beanstalk_reply> parse();
  // Reads what the socket has (waiting up to `timeout` for the first byte); false on timeout.
  bool fill(std::chrono::milliseconds timeout);

  int fd_ = -1;
  std::string out_;
  std::string in_;
  std::size_t in_pos_ = 0;  // consumed prefix of in_, compacted lazily
};

}  // namespace dispatch::bench
