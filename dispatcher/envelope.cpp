#include "dispatcher/envelope.hpp"

#include <type_traits>
#include <variant>

namespace dispatch {

const char* endpoint_refusal(endpoint_kind where, const protocol::request_body& body) {
  return std::visit(
      [where](const auto& msg) -> const char* {
        using T = std::decay_t<decltype(msg)>;
        using namespace protocol;
        constexpr bool worker_message =
            std::is_same_v<T, register_worker> || std::is_same_v<T, fetch> ||
            std::is_same_v<T, complete> || std::is_same_v<T, fail> ||
            std::is_same_v<T, heartbeat> || std::is_same_v<T, goodbye> ||
            std::is_same_v<T, extend>;
        constexpr bool producer_message = std::is_same_v<T, submit> ||
                                          std::is_same_v<T, get_task> || std::is_same_v<T, cancel>;
        if constexpr (producer_message) {
          return nullptr;
        } else if constexpr (worker_message) {
          return where == endpoint_kind::work ? nullptr
                                              : "worker messages are served on the work endpoint";
        } else {
          return where == endpoint_kind::admin ? nullptr
                                               : "admin messages are served on the admin endpoint";
        }
      },
      body);
}

}  // namespace dispatch
