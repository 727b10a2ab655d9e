#include "proxy/exchange.hpp"

#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

namespace portico::proxy {
namespace {

// Splits an absolute-form target ("http://a.localhost:7080/x?y") into authority and
// origin-form; RFC 9112 §3.2.2: the authority then replaces Host.
bool split_absolute_form(std::string_view target, std::string_view& authority,
                         std::string_view& origin)
{
    // The scheme is case-insensitive (RFC 9110 §4.2.3).
    std::size_t scheme_len = 0;
    if (target.size() > 7 && beast::iequals(target.substr(0, 7), "http://")) {
        scheme_len = 7;
    } else if (target.size() > 8 && beast::iequals(target.substr(0, 8), "https://")) {
        scheme_len = 8;
    } else {
        return false;
    }
    const auto rest = target.substr(scheme_len);
    const auto slash = rest.find_first_of("/?");
    authority = rest.substr(0, slash);
    if (slash == std::string_view::npos) {
        origin = "/";
    } else {
        origin = rest.substr(slash);
    }
    return !authority.empty() && authority.find('@') == std::string_view::npos;
}

} // namespace

request_plan plan_request(const serving_state& state, const request_facts& facts)
{
    request_plan plan;
    std::string_view origin = facts.target;
    std::string_view authority;
    if (split_absolute_form(facts.target, authority, origin)) {
        plan.host = std::string(authority);
    } else if (!facts.target.empty() && facts.target.front() == '/') {
        plan.host = std::string(facts.host);
    } else {
        plan.error = errc::bad_request;
        plan.detail = "the request target must be a path or an absolute http URL";
        return plan;
    }
    // "http://a.localhost?q=1" has an empty path, which is "/" (RFC 9110 §4.2.3).
    std::string rooted;
    if (origin.front() == '?') {
        rooted.reserve(origin.size() + 1);
        rooted += '/';
        rooted += origin;
        origin = rooted;
    }

    auto split = routing::split_request_target(origin);
    if (!split) {
        plan.error = errc::bad_request;
        plan.detail = "the request path is not a valid URL path";
        return plan;
    }

    // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400, whatever its target's form;
    // HTTP/1.0 clients may omit it and get the admin pages.
    if (!facts.has_host && facts.version >= 11) {
        plan.error = errc::bad_request;
        plan.detail = "HTTP/1.1 requests need a Host header";
        return plan;
    }
    if (!facts.has_host && authority.empty()) {
        plan.admin = true;
        plan.upstream_target = split->path + split->query;
        return plan;
    }

    const auto match = state.table.match(plan.host, split->path);
    if (match.kind == routing::match_kind::admin) {
        plan.admin = true;
        plan.upstream_target = split->path + split->query;
        return plan;
    }
    if (match.kind == routing::match_kind::invalid_host) {
        plan.error = errc::bad_request;
        plan.detail = authority.empty() ? "the Host header is not a valid host name or address"
                                        : "the request target's host is not a valid host name "
                                          "or address";
        return plan;
    }
    if (match.kind != routing::match_kind::route) {
        plan.error = errc::no_route;
        return plan;
    }
    const auto& r = *match.route;
    plan.route = &r;
    if (r.tls_passthrough) {
        plan.error = errc::tls_required; // the page says why (error_details::passthrough)
        return plan;
    }
    plan.upstream_target = routing::upstream_target(r, *split);
    switch (r.host_header) {
    case config::host_header_policy::preserve: plan.upstream_host = plan.host; break;
    case config::host_header_policy::backend: plan.upstream_host = r.to.authority(); break;
    case config::host_header_policy::literal: plan.upstream_host = r.host_header_value; break;
    }
    return plan;
}

http::error_details describe_error(const serving_state& state, const request_plan& plan,
                                   errc error, std::string_view scheme,
                                   std::string_view local_port)
{
    http::error_details d;
    d.error = error;
    d.host = plan.host;
    if (plan.route != nullptr) {
        d.backend = plan.route->to.text;
    }
    d.detail = plan.detail;
    d.body_not_taken = plan.body_not_taken;
    d.name_unresolved = plan.name_unresolved;
    d.out_of_descriptors = plan.out_of_descriptors;
    d.certificate_rejected = plan.certificate_rejected;
    d.passthrough = error == errc::tls_required && plan.route != nullptr &&
                    plan.route->tls_passthrough;
    d.exact_hosts = state.table.exact_hosts();
    d.wildcard_hosts = state.table.wildcard_hosts();
    d.config_file = state.cfg.source.native();
    d.scheme = scheme;
    d.port = local_port;
    return d;
}

errc classify_upstream_failure(const boost::system::error_code& ec)
{
    if (ec == beast::error::timeout) {
        return errc::upstream_timeout;
    }
    // An alert from OpenSSL after the handshake: under TLS 1.3 a backend that wants a client
    // certificate says so only once the client has finished its side of the handshake.
    if (ec.category() == boost::asio::error::get_ssl_category()) {
        return errc::upstream_tls;
    }
    return errc::upstream_protocol;
}

} // namespace portico::proxy
