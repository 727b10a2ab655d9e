#pragma once

// The immutable route table: built once from a validated configuration, then only read.
// Lookup cost depends on the request (its host labels and path segments), never on the
// number of routes. Pure: no I/O, no Asio.

#include "portico/config/config.hpp"

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace portico::routing {

/// What a request resolves to.
enum class match_kind {
    route, ///< a configured route
    admin, ///< the admin host (or localhost / a loopback literal with no route of its own)
    none,  ///< nothing: answer 404 `no_route`, never forward
    /// The host is not a host name or address (a bad port, a list, a '*'): answer 400
    /// (RFC 9112 §3.2), never forward.
    invalid_host,
};

/// The result of a lookup; `route` points into the table that produced it.
struct route_match {
    match_kind kind = match_kind::none;
    const config::route* route = nullptr;
};

/// A request target split for forwarding.
struct split_target {
    std::string path;  ///< normalised path
    std::string query; ///< including the leading '?', or empty
};

/**
 * Splits an origin-form request target into normalised path and query.
 * @return nullopt when the path cannot be normalised (the request is a 400).
 */
std::optional<split_target> split_request_target(std::string_view target);

/**
 * The target sent upstream: the route's prefix stripped when `strip_prefix` is set, the
 * backend's base path prepended, the query kept. "/api?q=1" with prefix "/api" stripped is
 * "/?q=1"; with base "/v1" it is "/v1/?q=1".
 */
std::string upstream_target(const config::route& r, const split_target& t);

/// Routes requests by host and path.
class route_table {
public:
    /**
     * Builds the table from a configuration that passed validation. The table keeps its
     * own copy of the routes; matches point into it.
     */
    explicit route_table(const config::config& cfg);
    /// As above from a validated configuration's `routes` and `admin`, taking the routes
    /// over instead of copying them.
    route_table(std::vector<config::route> routes, std::string_view admin);
    ~route_table();
    route_table(route_table&&) noexcept;
    route_table& operator=(route_table&&) noexcept;
    route_table(const route_table&) = delete;
    route_table& operator=(const route_table&) = delete;

    /**
     * Resolves a request. `host` is the Host header or the authority of an absolute-form
     * target as sent (any case, port and trailing dot allowed); `path` is normalised.
     * Most specific host first (exact, then longer wildcard suffix), then the longest
     * prefix on a segment boundary. The admin host wins over wildcard routes; `localhost`
     * and loopback literals without a route of their own resolve to the admin.
     */
    route_match match(std::string_view host, std::string_view path) const;

    /// The passthrough route for a TLS SNI name, or nullptr.
    const config::route* match_passthrough(std::string_view sni) const;

    /// True when a certificate may be issued for this SNI name (a routed or admin name).
    bool is_served_name(std::string_view sni) const;

    /// All routes, in file order.
    const std::vector<config::route>& routes() const noexcept;

    /// Distinct exact (non-wildcard) hosts in file order, for the 404 page.
    const std::vector<std::string>& exact_hosts() const noexcept;

    /// Distinct wildcard hosts in file order, for the 404 page.
    const std::vector<std::string>& wildcard_hosts() const noexcept;

    /// The admin host, normalised.
    const std::string& admin_host() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace portico::routing
