#pragma once

// A backend's response head read in place, for the common response: a final status with a
// Content-Length body. Beast's parser allocates and indexes every field it reads; this view
// keeps string_views into the bytes received and is what the head sent downstream is
// written from. It accepts only heads whose meaning is plain (see `parse_simple_response`);
// anything else goes to Beast's parser, which handles every form HTTP/1.1 allows.

#include "portico/http/message.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace portico::http {

/**
 * One field line of a `simple_response`, with the interface of Beast's field lines that the
 * header policy reads. `name()` tells apart only the fields framing and the policy act on
 * (hop-by-hop ones, Via, Content-Length) and is `field::unknown` for every other.
 */
class head_line {
public:
    head_line() = default;
    head_line(field known, std::string_view name, std::string_view value, std::string_view text)
        : known_(known), name_(name), value_(value), text_(text)
    {
    }
    field name() const noexcept { return known_; }
    std::string_view name_string() const noexcept { return name_; }
    std::string_view value() const noexcept { return value_; }
    /**
     * The line as received (CRLF included) when it is written as portico writes a line,
     * "name: value" CRLF with one space and no trailing whitespace; empty otherwise.
     */
    std::string_view canonical_text() const noexcept
    {
        const bool canonical =
            text_.size() == name_.size() + value_.size() + 4 && text_[name_.size() + 1] == ' ';
        return canonical ? text_ : std::string_view();
    }

private:
    field known_ = field::unknown;
    std::string_view name_;
    std::string_view value_;
    std::string_view text_;
};

/**
 * A response head as `parse_simple_response` found it; views into the parsed bytes. Large
 * (the lines are inline), so a worker keeps one and reuses it for each head it parses.
 */
struct simple_response {
    static constexpr std::size_t max_lines = 64;

    unsigned version = 11; ///< 10 or 11
    unsigned status = 0;
    std::string_view reason;
    std::uint64_t content_length = 0;
    bool keep_alive = true; ///< the backend keeps the connection open after this response
    std::array<head_line, max_lines> lines;
    std::size_t line_count = 0;

    const head_line* begin() const noexcept { return lines.data(); }
    const head_line* end() const noexcept { return lines.data() + line_count; }
};

/**
 * Parses a complete response head (status line to the empty line, CRLFs included) into
 * `out` when its framing is unambiguous: HTTP/1.0 or 1.1, a status from 200 to 599 other
 * than 204 and 304, exactly one Content-Length of digits, no Transfer-Encoding or
 * Proxy-Connection, no obsolete
 * line folding, CRLF line ends, token field names and values free of control characters
 * other than HTAB, at most `simple_response::max_lines` fields. @return false for any other
 * head, which the caller then gives to the full parser (to be handled or refused there).
 */
bool parse_simple_response(std::string_view head, simple_response& out);

} // namespace portico::http
