// Byte-string helpers for showing opaque payloads and peer-supplied names safely.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dispatch::ctl {

// Strict RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
// JSON output may only carry such text as a string; anything else is shown as base64.
bool is_valid_utf8(std::string_view bytes);

// Standard alphabet (RFC 4648 section 4) with '=' padding.
std::string base64_encode(std::string_view bytes);

// Terminal columns a string takes, counted as code points (one column each) so that
// non-ASCII names do not skew table alignment; wide CJK glyphs are not special-cased.
std::size_t display_width(std::string_view text);

}  // namespace dispatch::ctl
