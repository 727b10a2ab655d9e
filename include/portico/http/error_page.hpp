#pragma once

// The one place that turns a failure into a response: the status for each condition and
// the page (HTML for browsers, JSON on request) with `X-Portico-Error` set.

#include "portico/core/error.hpp"
#include "portico/http/message.hpp"

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace portico::http {

/// The status code for a condition; `upstream_refused` and friends are 502/504, limits 413/431.
status status_for(errc e) noexcept;

/// Everything an error page may say; empty fields are left out of the page.
struct error_details {
    errc error = errc::bad_request;
    std::string_view host;    ///< the Host the client asked for, as sent
    std::string_view route;   ///< the route's name ("host" or "host/path")
    std::string_view backend; ///< the route's `to` as written
    /// Addresses tried, e.g. {"127.0.0.1:5173", "[::1]:5173"}, for `upstream_refused`.
    std::span<const std::string> tried;
    std::string_view detail;  ///< one extra sentence (e.g. the TLS verification error)
    /// For `upstream_timeout`: the backend stopped taking the request body (`timeouts.idle`
    /// passed on a write) rather than not answering within `timeouts.upstream`.
    bool body_not_taken = false;
    /// For `upstream_refused`: the backend's host name did not resolve, so nothing was tried.
    bool name_unresolved = false;
    /// For `upstream_refused`: portico could not make a socket (no file descriptor left), so
    /// the backend was not tried.
    bool out_of_descriptors = false;
    /// For `upstream_tls`: the backend's certificate did not verify, which
    /// `insecure_skip_verify` would accept; otherwise the handshake itself failed.
    bool certificate_rejected = false;
    /// For `tls_required`: the host is a `tls_passthrough` route, reached only by a TLS
    /// handshake that names it.
    bool passthrough = false;
    /// For `tls_required`: where the request works over https ("" when no listener serves
    /// TLS).
    std::string_view https_url;
    /// For `no_route`: hosts to list. Exact hosts become links built from `scheme` and `port`.
    std::span<const std::string> exact_hosts;
    std::span<const std::string> wildcard_hosts;
    /// For `no_route` with no route at all: the configuration file to add one to ("" when
    /// portico runs on its built-in default).
    std::string_view config_file;
    /// The portico admin's own 404 and 405: replaces the condition's sentence and status.
    std::string_view message;
    unsigned status = 0;
    std::string_view scheme = "http"; ///< scheme of the request, for links
    std::string_view port;            ///< port the request came in on ("" = default for scheme)
};

/**
 * Builds the error response: status from `status_for`, `X-Portico-Error: <name>`,
 * `Cache-Control: no-store`, `Connection: close`, body as JSON when `json` is set (fields
 * `status`, `error`, `message`, `host`, `route`, `backend`, the ones that apply) and as a
 * self-contained HTML page otherwise (no external assets). `version` is the request's
 * (11 or 10).
 */
string_response make_error_response(const error_details& details, bool json, unsigned version);

/// A 308 Permanent Redirect to `location` (the method and body are kept by the client).
string_response make_redirect_response(std::string_view location, unsigned version,
                                       bool keep_alive);

/// Escapes text for HTML element content and quoted attribute values.
std::string html_escape(std::string_view text);

/**
 * What to do to add the first route, as HTML (the 404 page and the dashboard say it): edit
 * `config_file`, which a running portico watches, or, on the built-in default (""), write
 * portico.yaml and start again.
 */
std::string how_to_add_a_route(std::string_view config_file);

/// The one-sentence message for a condition, as the JSON `message` field carries it.
std::string error_message(const error_details& details);

} // namespace portico::http
