// The public codec: the message envelope ("v", "type", "id") and the no-throw boundary. Bodies
// live in request_bodies.cpp / reply_bodies.cpp, shared maps in records.cpp.
#include "protocol/codec.hpp"

#include <new>

#include "protocol/bodies.hpp"
#include "protocol/message_names.hpp"
#include "protocol/records.hpp"
#include "protocol/wire_reader.hpp"
#include "protocol/wire_writer.hpp"

namespace dispatch::protocol {
namespace {

// Read before anything else can fail, so that every later error reply can still echo the id.
// Silent on any oddity: the strict check of "id" comes later and reports it properly.
std::uint64_t peek_id(const wire::fields& f) {
  try {
    const msgpack::object* id = f.find("id");
    if (id && id->type == msgpack::type::POSITIVE_INTEGER) return id->via.u64;
  } catch (const wire::decode_error&) {
  }
  return 0;
}

void check_version(const wire::fields& f) {
  const msgpack::object* v = f.find("v");
  const wire::path at = f.at("v");
  if (!v) wire::fail(at, "missing; this peer speaks version 1", error_code::unsupported_version);
  if (v->type != msgpack::type::POSITIVE_INTEGER)
    wire::fail(at, "expected the integer 1", error_code::unsupported_version);
  if (v->via.u64 != version)
    wire::fail(at,
               "version " + std::to_string(v->via.u64) + " is not supported; this peer speaks 1",
               error_code::unsupported_version);
}

// Envelope fields only requests have.
void read_extras(const wire::fields& f, request& out) {
  out.token = f.optional("token", std::string{}, [](const msgpack::object& o, const wire::path& at) {
    return wire::read_str(o, at, 1, max_token_bytes);
  });
}
void read_extras(const wire::fields&, reply&) {}

template <class Message, class ReadBody>
bool decode_message(std::string_view bytes, Message& out, decode_failure& why,
                    std::string_view direction, ReadBody read_body) {
  why = decode_failure{};
  try {
    const msgpack::object_handle handle = wire::parse_one(bytes);
    const msgpack::object& root = handle.get();
    if (root.type != msgpack::type::MAP)
      throw wire::decode_error{error_code::malformed, "expected a msgpack map at the top level"};
    const wire::fields f(root, wire::path{});
    why.request_id = peek_id(f);
    check_version(f);
    const std::uint64_t id = f.required("id", wire::as_uint<std::uint64_t>());
    const std::string type = f.required("type", wire::as_text);
    auto body = read_body(type, f);
    if (!body)
      throw wire::decode_error{
          error_code::unknown_type,
          "type: unknown " + std::string(direction) + " type \"" + wire::printable(type) + "\""};
    out.id = id;
    read_extras(f, out);
    out.body = std::move(*body);
    return true;
  } catch (const wire::decode_error& e) {
    why.code = e.code;
    why.message = e.message;
  } catch (const std::bad_alloc&) {
    why.code = error_code::malformed;
    why.message = "message too large to decode";
  } catch (const std::exception& e) {
    // Not expected (every msgpack failure is mapped in parse_one); keeps the no-throw promise.
    why.code = error_code::internal;
    why.message = std::string("decoder error: ") + e.what();
  }
  return false;
}

}  // namespace

void encode(const request& r, std::string& out) {
  wire::writer w(out);
  bodies::write(w, r);
}

void encode(const reply& r, std::string& out) {
  wire::writer w(out);
  bodies::write(w, r);
}

bool decode(std::string_view bytes, request& out, decode_failure& why) {
  return decode_message(bytes, out, why, "request", bodies::read_request);
}

bool decode(std::string_view bytes, reply& out, decode_failure& why) {
  return decode_message(bytes, out, why, "reply", bodies::read_reply);
}

std::string_view type_name(const request_body& body) { return name_of(body); }
std::string_view type_name(const reply_body& body) { return name_of(body); }

}  // namespace dispatch::protocol
