// Encoding and decoding of the message bodies, below the envelope that codec.cpp handles.
// Private to dispatch_protocol.
#pragma once

#include <optional>
#include <string_view>

#include "protocol/messages.hpp"
#include "protocol/wire_reader.hpp"
#include "protocol/wire_writer.hpp"

namespace dispatch::protocol::bodies {

// Each writes the whole message map, envelope included.
void write(wire::writer& w, const request& r);
void write(wire::writer& w, const reply& r);

// nullopt when `type` names no body of that direction; wire::decode_error on a bad field.
std::optional<request_body> read_request(std::string_view type, const wire::fields& f);
std::optional<reply_body> read_reply(std::string_view type, const wire::fields& f);

}  // namespace dispatch::protocol::bodies
