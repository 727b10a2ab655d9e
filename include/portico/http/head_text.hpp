#pragma once

// Message heads as the bytes that go on the wire, appended to a caller's string. Beast's
// serializer presents a head as a nested buffer sequence (status line, then one buffer per
// field name, separator and value) that every write step walks again; on small proxied
// responses that walk cost more instructions than the rest of the exchange. One contiguous
// string is built in a single pass and can carry a small body in the same write.

#include "portico/http/message.hpp"

#include <string>
#include <string_view>

namespace portico::http {

/// Appends `req` as a request line and its fields, ending with the empty line.
void append_head(std::string& out, const request_head& req);

/// Appends one field line, "name: value\r\n".
void append_field(std::string& out, std::string_view name, std::string_view value);

/**
 * A parsed field line as Beast stores it, "name: value\r\n" in one piece: the bytes its
 * serializer writes. Empty when the line is not stored so (checked, not assumed).
 */
std::string_view stored_line(const fields::value_type& line) noexcept;

/// Appends a parsed field line, as `append_field` with its name and value: in one copy where
/// Beast stores it in one piece.
void append_field(std::string& out, const fields::value_type& line);

/// Appends a status line, e.g. "HTTP/1.1 200 OK\r\n"; `version` is 10 or 11.
void append_status_line(std::string& out, unsigned version, unsigned code,
                        std::string_view reason);

/**
 * The reason phrase sent for `code` when none was received: the standard one, "Early Hints"
 * for 103, and none for a code Beast does not know (whose phrase it would write as
 * "<unknown-status>"; RFC 9112 §4 allows an empty one).
 */
std::string_view standard_reason(unsigned code) noexcept;

/// The reason phrase `res` is sent with: its own, else `standard_reason`.
std::string_view reason_of(const response_head& res) noexcept;

/// Appends `res` as a status line (with `reason_of(res)`) and its fields, ending with the
/// empty line.
void append_head(std::string& out, const response_head& res);

} // namespace portico::http
