#include "persistence/status.hpp"

namespace dispatch::persistence {

std::string status::to_string() const {
  // Same shape as rocksdb::Status::ToString(): a short kind, then what failed and where.
  switch (code_) {
    case code::ok:
      return "OK";
    case code::not_found:
      return "not found: " + message_;
    case code::io_error:
      return "IO error: " + message_;
    case code::corruption:
      return "corruption: " + message_;
    case code::invalid_argument:
      return "invalid argument: " + message_;
  }
  return "unknown error: " + message_;
}

}  // namespace dispatch::persistence
