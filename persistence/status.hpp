// Outcome of a store operation, in the manner of rocksdb::Status: cheap when ok, and a message
// that says what failed and where when not.
#pragma once

#include <string>
#include <utility>

namespace dispatch::persistence {

class status {
 public:
  enum class code : unsigned char { ok, not_found, io_error, corruption, invalid_argument };

  status() = default;
  static status ok() { return {}; }
  static status not_found(std::string msg) { return {code::not_found, std::move(msg)}; }
  static status io_error(std::string msg) { return {code::io_error, std::move(msg)}; }
  static status corruption(std::string msg) { return {code::corruption, std::move(msg)}; }
  static status invalid_argument(std::string msg) { return {code::invalid_argument, std::move(msg)}; }

  bool is_ok() const { return code_ == code::ok; }
  bool is_not_found() const { return code_ == code::not_found; }
  code error_code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const;

 private:
  status(code c, std::string msg) : code_(c), message_(std::move(msg)) {}
  code code_ = code::ok;
  std::string message_;
};

}  // namespace dispatch::persistence
