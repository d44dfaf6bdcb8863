// msgpack encoding and decoding of protocol messages and stored task records.
//
// Decoding never throws and never trusts its input: any failure comes back as a decode_failure
// that names the offending field, with the request id when one could be read, so that the
// caller can answer with a precise error and drop the message.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/messages.hpp"

namespace dispatch::protocol {

// Longer tokens are refused as bad_field before anyone hashes them.
constexpr std::size_t max_token_bytes = 256;

struct decode_failure {
  std::uint64_t request_id = 0;  // 0 when the id itself could not be read
  error_code code = error_code::malformed;
  std::string message;  // e.g. "field 'capacity': expected a positive integer"
};

// `out` is cleared first; encoding never fails.
void encode(const request& r, std::string& out);
void encode(const reply& r, std::string& out);

bool decode(std::string_view bytes, request& out, decode_failure& why);
bool decode(std::string_view bytes, reply& out, decode_failure& why);

// The message type name a request / reply carries on the wire ("register", "jobs", ...).
std::string_view type_name(const request_body& body);
std::string_view type_name(const reply_body& body);

// Stored form of a task (RocksDB value), stored_task.cpp: written as version 2 (positional);
// version 1 records (a msgpack map with the wire's field names) are still read. decode_task
// returns false for anything else, never throws.
void encode_task(const task& t, std::string& out);
bool decode_task(std::string_view bytes, task& out);

}  // namespace dispatch::protocol
