#pragma once

// The admin host: dashboard, JSON API and Prometheus metrics, rendered from the current
// configuration and an observatory. Pure rendering: no I/O.

#include "portico/admin/observatory.hpp"
#include "portico/config/config.hpp"
#include "portico/routing/route_table.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace portico::admin {

/// What the admin host needs to know of a request.
struct page_request {
    std::string_view method; ///< "GET", "HEAD", ...
    std::string_view target; ///< origin-form target
    std::string_view scheme; ///< "http" or "https", for links to routes
    std::string_view port;   ///< the port the request came in on, for links
    /// The port that serves https to this client, for links to routes only reached over
    /// https (`redirect_https`, `tls_passthrough`); "" for `port`.
    std::string_view https_port = {};
};

/// What the admin host answers.
struct page_response {
    unsigned status = 200;
    std::string content_type;
    std::string body;
    std::string allow; ///< `Allow` header for 405
    /// For a 404 or 405: what to tell the client, on an error page in the format it reads
    /// (set instead of `body`).
    std::string error_message;
};

/// The state the pages are rendered from.
struct page_context {
    const config::config& cfg;
    const routing::route_table& table;
    const observatory& obs;
    std::string_view version;
    std::span<const std::string> listening; ///< bound addresses, e.g. "127.0.0.1:7080"
};

/// portico's version, as /api/health and /metrics report it.
std::string_view build_version() noexcept;

/// Answers a request for the admin host.
page_response respond(const page_request& request, const page_context& context);

/// The body of `GET /metrics`.
std::string render_metrics(const page_context& context);

/**
 * True when an `Origin` (or `Referer`) value names the admin host, `localhost`,
 * `127.0.0.1` or `[::1]` on one of `ports` (the portico listeners), with http or https.
 */
bool is_allowed_origin(std::string_view value, std::string_view admin_host,
                       std::span<const std::uint16_t> ports);

} // namespace portico::admin
