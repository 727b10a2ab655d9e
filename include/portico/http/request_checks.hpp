#pragma once

// Checks that run on the raw bytes of a request head before Beast parses it, for what a
// lenient parser would accept and a backend might read differently (request smuggling).

#include <cstddef>
#include <optional>
#include <string_view>

namespace portico::http {

/// Why a raw request head was refused.
enum class head_defect {
    none,
    bare_cr,  ///< CR not followed by LF
    bare_lf,  ///< LF not preceded by CR
    nul,      ///< a NUL byte anywhere in the head
    obs_fold, ///< a header line continued with leading whitespace (RFC 9112 §5.2)
};

/**
 * Finds the end of a request head: the index just past its empty line, the first CRLFCRLF
 * in `data`, or earlier where a line ends in a bare LF and the next line is empty (a head
 * that `check_head_bytes` refuses). Leading empty lines before the request line are allowed
 * (RFC 9112 §2.2) and belong to the head. @return 0 when the head is not complete yet.
 */
std::size_t find_head_end(std::string_view data) noexcept;

/// Checks a complete head (as delimited by `find_head_end`) for smuggling-prone bytes.
head_defect check_head_bytes(std::string_view head) noexcept;

/// A request line's parts; views into the head.
struct request_line {
    std::string_view method;
    std::string_view target;
    unsigned version = 11; ///< 10 or 11
};

/**
 * The request line of a head, when it is sound (`token SP target SP HTTP/1.0|1.1`, after any
 * empty lines, the target free of controls and spaces): for the log of a request refused
 * before its head could be parsed whole (a bad field, a head too large).
 */
std::optional<request_line> read_request_line(std::string_view head) noexcept;

/**
 * Checks the chunked framing of the body bytes received so far (RFC 9112 §7.1) as the
 * parser that later reads the body does: every complete chunk-size line must be a
 * hexadecimal size that fits 64 bits (with optional extensions) and every chunk must end in
 * CRLF. Catches a malformed body before anything is sent upstream when it arrives with the
 * head, as smuggling attempts do. @return false on a framing error.
 */
bool is_chunked_prefix_valid(std::string_view body) noexcept;

/**
 * Whether `framing` (the start of a chunk line or trailer section a parser is waiting to
 * see whole) holds a line feed without the CR before it. Beast looks for CRLF only, so it
 * would wait for more bytes after such a line: a client that sends none would hang until
 * its timeout, a backend forever. Only line feeds at `from` or after are looked at, so that
 * bytes that arrive a few at a time are each looked at once.
 */
bool has_bare_lf(std::string_view framing, std::size_t from = 0) noexcept;

/// A short reason for logs and the 400 page ("obsolete line folding").
std::string_view describe(head_defect d) noexcept;

} // namespace portico::http
