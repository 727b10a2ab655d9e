#pragma once

// Codec-independent decisions about one request: which route serves it, what is sent
// upstream, and how a failure is described. The HTTP/1 connection uses it today; an HTTP/2
// codec feeds it the same facts.

#include "proxy/worker.hpp"

#include "portico/core/error.hpp"
#include "portico/http/error_page.hpp"
#include "portico/http/header_policy.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace portico::proxy {

/// What a downstream codec extracted from a request head.
struct request_facts {
    std::string_view target;   ///< request target as sent
    std::string_view host;     ///< Host header as sent (empty when absent)
    bool has_host = false;     ///< a Host header was present
    unsigned version = 11;     ///< 10 or 11
    bool tls = false;          ///< arrived over TLS
};

/// The outcome of planning a request.
struct request_plan {
    std::optional<errc> error;       ///< set when the request is answered by portico
    bool admin = false;              ///< for the admin host: dashboard, API, metrics
    std::string detail;              ///< extra words for the error page
    bool body_not_taken = false;     ///< a timeout was the backend not reading the body
    bool name_unresolved = false;    ///< a refusal was the backend's name not resolving
    bool out_of_descriptors = false; ///< a refusal was portico having no descriptor left
    bool certificate_rejected = false; ///< a TLS failure was the backend's certificate
    std::string host;                ///< effective host as sent (Host or absolute-form authority)
    const config::route* route = nullptr;
    std::string upstream_target;     ///< origin-form target for the backend (or the admin page)
    std::string upstream_host;       ///< Host header for the backend
    /// Fields the client's `Connection` named, hop-by-hop in its trailer section too.
    std::vector<std::string> connection_named;
};

/**
 * Resolves a request against the routes: target form (origin or absolute), host, path
 * normalisation, route match, DNS-rebinding guard, upstream target and Host.
 */
request_plan plan_request(const serving_state& state, const request_facts& facts);

/// Fills the parts of an error page that come from the configuration and the request.
http::error_details describe_error(const serving_state& state, const request_plan& plan,
                                   errc error, std::string_view scheme,
                                   std::string_view local_port);

/// Maps a failure while talking to a backend to the condition the client is told.
errc classify_upstream_failure(const boost::system::error_code& ec);

} // namespace portico::proxy
