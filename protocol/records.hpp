// The maps that appear inside several messages (and, for TASK, in the store): one writer and one
// reader each, so the reply encoder, the reply decoder and the task store cannot drift apart.
// Private to dispatch_protocol.
#pragma once

#include <map>
#include <string>

#include "protocol/messages.hpp"
#include "protocol/wire_reader.hpp"
#include "protocol/wire_writer.hpp"

namespace dispatch::protocol::records {

void write_task(wire::writer& w, const task& t);
task read_task(const msgpack::object& o, const wire::path& at);

void write_job(wire::writer& w, const job& j);
job read_job(const msgpack::object& o, const wire::path& at);

void write_worker(wire::writer& w, const worker_info& info);
worker_info read_worker(const msgpack::object& o, const wire::path& at);

void write_event(wire::writer& w, const event_record& e);
event_record read_event(const msgpack::object& o, const wire::path& at);

void write_project(wire::writer& w, const project_info& info);
project_info read_project(const msgpack::object& o, const wire::path& at);

// status name -> count. Written with every status present (0 when the map lacks it) so that
// clients never have to guess whether a missing status means zero.
void write_counts(wire::writer& w, const std::map<std::string, std::uint64_t>& counts);
std::map<std::string, std::uint64_t> read_counts(const msgpack::object& o, const wire::path& at);

inline constexpr auto as_task = [](const msgpack::object& o, const wire::path& at) {
  return read_task(o, at);
};
inline constexpr auto as_job = [](const msgpack::object& o, const wire::path& at) {
  return read_job(o, at);
};
inline constexpr auto as_worker = [](const msgpack::object& o, const wire::path& at) {
  return read_worker(o, at);
};
inline constexpr auto as_event = [](const msgpack::object& o, const wire::path& at) {
  return read_event(o, at);
};
inline constexpr auto as_project = [](const msgpack::object& o, const wire::path& at) {
  return read_project(o, at);
};
inline constexpr auto as_counts = [](const msgpack::object& o, const wire::path& at) {
  return read_counts(o, at);
};

}  // namespace dispatch::protocol::records
