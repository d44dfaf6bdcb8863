#include "dispatcher/envelope.hpp"

#include <type_traits>
#include <variant>

namespace dispatch {

message_family family_of(const protocol::request_body& body) {
  return std::visit(
      [](const auto& msg) {
        using T = std::decay_t<decltype(msg)>;
        using namespace protocol;
        if constexpr (std::is_same_v<T, register_worker> || std::is_same_v<T, fetch> ||
                      std::is_same_v<T, complete> || std::is_same_v<T, fail> ||
                      std::is_same_v<T, report> || std::is_same_v<T, heartbeat> ||
                      std::is_same_v<T, goodbye> || std::is_same_v<T, extend>)
          return message_family::worker;
        else if constexpr (std::is_same_v<T, submit> || std::is_same_v<T, get_task> ||
                           std::is_same_v<T, cancel>)
          return message_family::producer;
        else
          return message_family::admin;
      },
      body);
}

const char* endpoint_refusal(endpoint_kind where, const protocol::request_body& body) {
  switch (family_of(body)) {
    case message_family::producer:
      return nullptr;
    case message_family::worker:
      return where == endpoint_kind::work ? nullptr
                                          : "worker messages are served on the work endpoint";
    case message_family::admin:
      break;
  }
  return where == endpoint_kind::admin ? nullptr
                                       : "admin messages are served on the admin endpoint";
}

}  // namespace dispatch
