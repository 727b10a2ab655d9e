#pragma once

#include <boost/system/error_code.hpp>

#include <string_view>
#include <type_traits>

namespace portico {

/// Conditions portico reports to clients; each name is the `X-Portico-Error` value.
enum class errc {
    no_route = 1,             ///< no route for the request's host (404)
    upstream_refused,         ///< the backend refused the connection (502)
    upstream_connect_timeout, ///< connecting to the backend timed out (504)
    upstream_timeout,         ///< the backend did not answer within `timeouts.upstream` (504)
    upstream_tls,             ///< TLS to an https backend failed or did not verify (502)
    upstream_protocol,        ///< the backend sent an invalid response (502)
    bad_request,              ///< malformed request (400)
    header_too_large,         ///< request head over `limits.header_bytes` (431)
    body_too_large,           ///< request body over `limits.body_bytes` (413)
    header_timeout,           ///< request head not received within `timeouts.header` (408)
    tls_required,             ///< plain HTTP where only TLS is served (400)
    forbidden_origin,         ///< admin request from a foreign Origin (403)
    tls_handshake_failed,     ///< downstream TLS handshake failed (no response possible)
};

/// Which side of the proxy a failure came from.
enum class side {
    downstream, ///< the client
    upstream,   ///< the backend
    internal,   ///< portico itself
};

/// The error category of `portico::errc`.
const boost::system::error_category& error_category() noexcept;

/// Makes an error code in portico's category.
boost::system::error_code make_error_code(errc e) noexcept;

/// The stable name of a condition, e.g. "upstream_refused".
std::string_view to_string(errc e) noexcept;

} // namespace portico

template <>
struct boost::system::is_error_code_enum<portico::errc> : std::true_type {};
