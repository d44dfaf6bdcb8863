// The wire name of every message body, and construction of a body from its name. One table per
// body type keeps type_name(), the encoders and the decoders from disagreeing about a name.
// Private to dispatch_protocol.
#pragma once

#include <optional>
#include <string_view>
#include <utility>
#include <variant>

#include "protocol/messages.hpp"

namespace dispatch::protocol {

template <class Body>
struct wire_name;  // no primary definition: a body without a name fails to compile

#define DISPATCH_WIRE_NAME(body_type, text)         \
  template <>                                       \
  struct wire_name<body_type> {                     \
    static constexpr std::string_view value = text; \
  }

DISPATCH_WIRE_NAME(register_worker, "register");
DISPATCH_WIRE_NAME(fetch, "fetch");
DISPATCH_WIRE_NAME(complete, "complete");
DISPATCH_WIRE_NAME(fail, "fail");
DISPATCH_WIRE_NAME(heartbeat, "heartbeat");
DISPATCH_WIRE_NAME(goodbye, "goodbye");
DISPATCH_WIRE_NAME(submit, "submit");
DISPATCH_WIRE_NAME(get_task, "status");
DISPATCH_WIRE_NAME(cancel, "cancel");
DISPATCH_WIRE_NAME(list_tasks, "tasks");
DISPATCH_WIRE_NAME(list_workers, "workers");
DISPATCH_WIRE_NAME(list_projects, "projects");
DISPATCH_WIRE_NAME(get_stats, "stats");
DISPATCH_WIRE_NAME(pause_project, "pause");
DISPATCH_WIRE_NAME(resume_project, "resume");
DISPATCH_WIRE_NAME(configure_project, "configure");
DISPATCH_WIRE_NAME(extend, "extend");
DISPATCH_WIRE_NAME(retry_task, "retry");
DISPATCH_WIRE_NAME(remove_task, "remove");
DISPATCH_WIRE_NAME(worker_order, "order");
DISPATCH_WIRE_NAME(list_events, "events");
DISPATCH_WIRE_NAME(set_pool, "pool");
DISPATCH_WIRE_NAME(report, "report");

DISPATCH_WIRE_NAME(registered, "registered");
DISPATCH_WIRE_NAME(jobs, "jobs");
DISPATCH_WIRE_NAME(ok, "ok");
DISPATCH_WIRE_NAME(submitted, "submitted");
DISPATCH_WIRE_NAME(task_info, "task");
DISPATCH_WIRE_NAME(task_list, "task_list");
DISPATCH_WIRE_NAME(worker_list, "worker_list");
DISPATCH_WIRE_NAME(project_list, "project_list");
DISPATCH_WIRE_NAME(stats, "stats");
DISPATCH_WIRE_NAME(error, "error");
DISPATCH_WIRE_NAME(heartbeat_reply, "heartbeat");
DISPATCH_WIRE_NAME(event_list, "event_list");
DISPATCH_WIRE_NAME(reported, "reported");

#undef DISPATCH_WIRE_NAME

template <class Variant>
std::string_view name_of(const Variant& body) {
  return std::visit([](const auto& b) { return wire_name<std::decay_t<decltype(b)>>::value; },
                    body);
}

namespace detail {
template <class Variant, class Fill, std::size_t... I>
std::optional<Variant> make_named(std::string_view type, const Fill& fill,
                                  std::index_sequence<I...>) {
  std::optional<Variant> out;
  const auto try_one = [&](auto index) {
    using body = std::variant_alternative_t<decltype(index)::value, Variant>;
    if (out || type != wire_name<body>::value) return;
    body b;
    fill(b);
    out.emplace(std::in_place_index<decltype(index)::value>, std::move(b));
  };
  (try_one(std::integral_constant<std::size_t, I>{}), ...);
  return out;
}
}  // namespace detail

// The alternative of `Variant` named `type`, default-constructed and then passed to
// `fill(body&)`; nullopt when no alternative has that name.
template <class Variant, class Fill>
std::optional<Variant> make_named(std::string_view type, const Fill& fill) {
  return detail::make_named<Variant>(type, fill,
                                     std::make_index_sequence<std::variant_size_v<Variant>>{});
}

}  // namespace dispatch::protocol
