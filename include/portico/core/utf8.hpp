#pragma once

// Text that reaches JSON output (logs, the admin API, error pages) from the network: JSON
// is UTF-8 (RFC 8259 §8.1), and a client can send any bytes in a target or a Host.

#include <cstddef>
#include <string>
#include <string_view>

namespace portico::utf8 {

/// The length of the well-formed sequence that starts at `s[i]` (1 for ASCII), or 0 when the
/// byte there starts none (RFC 3629 §4: no overlong forms, surrogates or code points above
/// U+10FFFF, and none cut short by the end of `s`).
std::size_t sequence_length(std::string_view s, std::size_t i) noexcept;

/// Whether `s` is well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or code points
/// above U+10FFFF).
bool is_valid(std::string_view s) noexcept;

/// Appends `s` to `out` with every byte that does not start a well-formed sequence replaced
/// by U+FFFD, as decoders do.
void append_valid(std::string& out, std::string_view s);

/// `s` made well-formed in place (see `append_valid`); no copy when it already is.
void make_valid(std::string& s);

} // namespace portico::utf8
