// The stored form of a task (a RocksDB value). Version 2 is positional: a msgpack array of the
// version and then every field in a fixed order, with no field names. The named map of version
// 1 (the wire's task record, records::write_task) spent ~230 bytes of names on every record,
// more than a typical task's own data, in every WAL write, memtable, flush and compaction of a
// task written three times in its life. Version 1 records are still read.
#include <cstdint>
#include <limits>
#include <type_traits>

#include "protocol/codec.hpp"
#include "protocol/records.hpp"
#include "protocol/wire_reader.hpp"
#include "protocol/wire_writer.hpp"

namespace dispatch::protocol {
namespace {

constexpr std::uint64_t stored_version = 2;
constexpr std::uint32_t stored_size = 25;  // the version and 24 fields

// Reads the elements of a version 2 array in order; any element of the wrong type or range makes
// the record unreadable (false), never a crash.
class positional {
 public:
  explicit positional(const msgpack::object_array& a) : a_(a) {}

  template <class T>
  bool number(T& out) {
    const msgpack::object& o = next();
    if constexpr (std::is_signed_v<T>) {
      std::int64_t v = 0;
      if (o.type == msgpack::type::POSITIVE_INTEGER) {
        if (o.via.u64 > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          return false;
        v = static_cast<std::int64_t>(o.via.u64);
      } else if (o.type == msgpack::type::NEGATIVE_INTEGER) {
        v = o.via.i64;
      } else {
        return false;
      }
      if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) return false;
      out = static_cast<T>(v);
    } else {
      if (o.type != msgpack::type::POSITIVE_INTEGER || o.via.u64 > std::numeric_limits<T>::max())
        return false;
      out = static_cast<T>(o.via.u64);
    }
    return true;
  }
  bool text(std::string& out) { return chars(msgpack::type::STR, out); }
  bool bytes(std::string& out) { return chars(msgpack::type::BIN, out); }
  bool flag(bool& out) {
    const msgpack::object& o = next();
    if (o.type != msgpack::type::BOOLEAN) return false;
    out = o.via.boolean;
    return true;
  }
  bool texts(std::vector<std::string>& out) {
    const msgpack::object& o = next();
    if (o.type != msgpack::type::ARRAY) return false;
    out.resize(o.via.array.size);
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
      const msgpack::object& s = o.via.array.ptr[i];
      if (s.type != msgpack::type::STR) return false;
      out[i].assign(s.via.str.ptr, s.via.str.size);
    }
    return true;
  }
  bool status(task_status& out) {
    std::uint8_t code = 0;
    if (!number(code) || code >= task_status_count) return false;
    out = static_cast<task_status>(code);
    return true;
  }

 private:
  const msgpack::object& next() { return a_.ptr[i_++]; }  // callers read exactly stored_size
  bool chars(msgpack::type::object_type type, std::string& out) {
    const msgpack::object& o = next();
    if (o.type != type) return false;
    // STR and BIN share their layout in msgpack-c's object union.
    out.assign(o.via.str.ptr, o.via.str.size);
    return true;
  }

  const msgpack::object_array& a_;
  std::uint32_t i_ = 0;
};

bool read_positional(const msgpack::object& o, task& t) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size != stored_size) return false;
  positional r(o.via.array);
  std::uint64_t version = 0;
  return r.number(version) && version == stored_version && r.number(t.id) && r.text(t.project) &&
         r.text(t.type) && r.number(t.priority) && r.bytes(t.payload) && r.texts(t.tags) &&
         r.status(t.status) && r.number(t.attempts) && r.number(t.failures) &&
         r.number(t.max_attempts) && r.number(t.timeout_ms) && r.number(t.run_at) &&
         r.number(t.deadline) && r.flag(t.overdue) && r.text(t.idempotency_key) &&
         r.number(t.lease_expires_at) && r.text(t.worker) && r.number(t.created_at) &&
         r.number(t.assigned_at) && r.number(t.finished_at) && r.bytes(t.result) &&
         r.text(t.error) && r.text(t.title) && r.text(t.description);
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
    task t;
    if (!read_positional(o, t)) return false;
    out = std::move(t);
    return true;
  } catch (const wire::decode_error&) {
  } catch (const std::exception&) {
  }
  return false;
}

}  // namespace dispatch::protocol
