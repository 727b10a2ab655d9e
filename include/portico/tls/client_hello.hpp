#pragma once

// Reads the server name from a TLS ClientHello without terminating TLS, for passthrough
// routes (RFC 8446 §4.1.2, RFC 6066 §3). Pure: no I/O.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace portico::tls {

/// What the bytes received so far say.
enum class hello_status {
    complete,   ///< a whole ClientHello was parsed; `server_name` may be empty (no SNI)
    incomplete, ///< more bytes are needed (the hello may span several TLS records/segments)
    malformed,  ///< not a TLS ClientHello
};

/// The outcome of `parse_client_hello`.
struct hello_result {
    hello_status status = hello_status::incomplete;
    /// Lower case, as sent (host_name type only); empty also for a name with a byte no host
    /// name has (a space, a control, non-ASCII), which no route can match.
    std::string server_name;
};

/**
 * Parses the start of a TLS connection as it arrives: each call is given everything
 * received so far (what earlier calls saw is a prefix of it) and reads only what came after
 * the records it took whole before.
 */
class hello_parser {
public:
    hello_result parse(std::string_view bytes);

private:
    std::string message_;                     ///< the handshake bytes of the whole records
    std::optional<std::size_t> message_size_; ///< the ClientHello's size, once known
    std::size_t consumed_ = 0;                ///< input bytes of those records
};

/**
 * Parses the start of a TLS connection. Handles a ClientHello split over several TLS
 * records and TCP segments. Bounded: a hello larger than 64 KiB is malformed.
 */
hello_result parse_client_hello(std::string_view bytes);

/// True when the first byte of a connection starts a TLS handshake record (0x16).
inline bool is_tls_record_start(unsigned char first_byte) noexcept { return first_byte == 0x16; }

} // namespace portico::tls
