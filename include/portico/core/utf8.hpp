#pragma once

// Text that reaches JSON output (logs, the admin API, error pages) from the network: JSON
// is UTF-8 (RFC 8259 §8.1), and a client can send any bytes in a target or a Host.

#include <string>
#include <string_view>

namespace portico::utf8 {

/// Whether `s` is well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or code points
/// above U+10FFFF).
bool is_valid(std::string_view s) noexcept;

/// Appends `s` to `out` with every byte that does not start a well-formed sequence replaced
/// by U+FFFD, as decoders do.
void append_valid(std::string& out, std::string_view s);

/// `s` made well-formed in place (see `append_valid`); no copy when it already is.
void make_valid(std::string& s);

} // namespace portico::utf8
