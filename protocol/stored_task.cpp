// The stored form of a task (a RocksDB value). Version 2 is positional: a msgpack array of the
// version and then every field in a fixed order, with no field names. The named map of version
// 1 (the wire's task record, records::write_task) spent ~230 bytes of names on every record,
// more than a typical task's own data, in every WAL write, memtable, flush and compaction of a
// task written three times in its life. Version 1 records are still read.
#include <cstdint>
#include <limits>

#include "protocol/codec.hpp"
#include "protocol/records.hpp"
#include "protocol/wire_reader.hpp"
#include "protocol/wire_writer.hpp"

namespace dispatch::protocol {
namespace {

constexpr std::uint64_t stored_version = 2;
constexpr std::uint32_t stored_size = 25;  // the version and 24 fields

// Reads the elements of a version 2 array one after the other with the protocol's own readers
// (wire_reader), which throw decode_error on a wrong type or range; decode_task turns that into
// "unreadable".
class positional {
 public:
  explicit positional(const msgpack::object& o) {
    std::size_t count = 0;
    items_ = wire::read_array(o, root_, stored_size, stored_size, count);
  }

  template <class T>
  T uint(T lo = 0, T hi = std::numeric_limits<T>::max()) {
    const std::size_t i = i_++;
    return static_cast<T>(wire::read_uint(items_[i], root_.index(i), lo, hi));
  }
  template <class T>
  T sint() {
    const std::size_t i = i_++;
    return static_cast<T>(wire::read_int(items_[i], root_.index(i), std::numeric_limits<T>::min(),
                                         std::numeric_limits<T>::max()));
  }
  std::string text() {
    const std::size_t i = i_++;
    return wire::read_str(items_[i], root_.index(i), 0, wire::unbounded);
  }
  // Bytes are written as bin; a str in their place is not something this store wrote.
  std::string bytes() {
    const std::size_t i = i_++;
    if (items_[i].type != msgpack::type::BIN) wire::fail(root_.index(i), "expected bin");
    return wire::read_bytes(items_[i], root_.index(i));
  }
  bool flag() {
    const std::size_t i = i_++;
    return wire::read_bool(items_[i], root_.index(i));
  }
  std::vector<std::string> texts() {
    const std::size_t i = i_++;
    const wire::path at = root_.index(i);
    std::size_t count = 0;
    const msgpack::object* e = wire::read_array(items_[i], at, 0, wire::unbounded, count);
    std::vector<std::string> out;
    out.reserve(count);
    for (std::size_t k = 0; k < count; ++k)
      out.push_back(wire::read_str(e[k], at.index(k), 0, wire::unbounded));
    return out;
  }

 private:
  wire::path root_;
  const msgpack::object* items_ = nullptr;
  std::size_t i_ = 0;
};

task read_positional(const msgpack::object& o) {
  positional r(o);
  r.uint<std::uint64_t>(stored_version, stored_version);
  task t;
  t.id = r.uint<task_id>();
  t.project = r.text();
  t.type = r.text();
  t.priority = r.sint<std::int32_t>();
  t.payload = r.bytes();
  t.tags = r.texts();
  // The enum's values are a stored format (see encode_task).
  t.status = static_cast<task_status>(r.uint<std::uint8_t>(0, task_status_count - 1));
  t.attempts = r.uint<std::uint32_t>();
  t.failures = r.uint<std::uint32_t>();
  t.max_attempts = r.uint<std::uint32_t>();
  t.timeout_ms = r.uint<std::uint32_t>();
  t.run_at = r.sint<millis>();
  t.deadline = r.sint<millis>();
  t.overdue = r.flag();
  t.idempotency_key = r.text();
  t.lease_expires_at = r.sint<millis>();
  t.worker = r.text();
  t.created_at = r.sint<millis>();
  t.assigned_at = r.sint<millis>();
  t.finished_at = r.sint<millis>();
  t.result = r.bytes();
  t.error = r.text();
  t.title = r.text();
  t.description = r.text();
  return t;
}

}  // namespace

void encode_task(const task& t, std::string& out) {
  wire::writer w(out);
  w.array(stored_size);
  w.uint(stored_version);
  w.uint(t.id);
  w.str(t.project);
  w.str(t.type);
  w.sint(t.priority);
  w.bin(t.payload);
  w.array(t.tags.size());
  for (const auto& tag : t.tags) w.str(tag);
  w.uint(static_cast<std::uint64_t>(t.status));  // the enum's values are a stored format
  w.uint(t.attempts);
  w.uint(t.failures);
  w.uint(t.max_attempts);
  w.uint(t.timeout_ms);
  w.sint(t.run_at);
  w.sint(t.deadline);
  w.boolean(t.overdue);
  w.str(t.idempotency_key);
  w.sint(t.lease_expires_at);
  w.str(t.worker);
  w.sint(t.created_at);
  w.sint(t.assigned_at);
  w.sint(t.finished_at);
  w.bin(t.result);
  w.str(t.error);
  w.str(t.title);
  w.str(t.description);
}

bool decode_task(std::string_view bytes, task& out) {
  try {
    const msgpack::object_handle handle = wire::parse_one(bytes);
    const msgpack::object& o = handle.get();
    if (o.type == msgpack::type::MAP) {  // version 1, written before version 2 existed
      out = records::read_task(o, wire::path{});
      return true;
    }
    out = read_positional(o);
    return true;
  } catch (const wire::decode_error&) {
  } catch (const std::exception&) {
  }
  return false;
}

}  // namespace dispatch::protocol
