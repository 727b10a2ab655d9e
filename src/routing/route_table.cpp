#include "portico/routing/route_table.hpp"

#include "portico/core/uri.hpp"

#include <algorithm>
#include <functional>
#include <optional>
#include <unordered_map>
#include <utility>

namespace portico::routing {
namespace {

// Heterogeneous lookup (C++20, libstdc++ 11+): the hot path probes the maps with
// std::string_view slices of the request, never with a freshly built std::string.
// Deliberately not noexcept: libstdc++ then stores each key's hash in its node, so a probe
// that lands in an occupied bucket compares hashes instead of rehashing every key there,
// and a miss costs the same in a big table as in a small one.
struct string_hash {
    using is_transparent = void;

    std::size_t operator()(std::string_view s) const
    {
        return std::hash<std::string_view>{}(s);
    }
};

template <typename Value>
using string_map = std::unordered_map<std::string, Value, string_hash, std::equal_to<>>;

/// Everything routed for one host pattern (an exact name or a wildcard suffix).
struct host_entry {
    string_map<const config::route*> paths;     ///< normalised prefix -> route
    std::size_t longest_path = 0;               ///< the longest prefix in `paths`
    const config::route* passthrough = nullptr; ///< the host's TLS passthrough route, if any
    bool has_terminated = false;                ///< some route here is not passthrough
    bool is_admin = false;                      ///< the admin host: serves every path

    /// The route with the longest prefix of `path` on a segment boundary, or nullptr.
    const config::route* find(std::string_view path) const
    {
        if (path.empty()) {
            path = "/";
        }
        // Probing each segment-boundary prefix costs O(segments) whatever the number of
        // routes. Prefixes are stored without a trailing '/', so "/api/" falls to "/api"
        // and "/apix" to "/". Prefixes longer than any route's are not probed: each probe
        // hashes its prefix, and a path of thousands of segments would cost their square.
        if (path.size() > longest_path) {
            const auto slash = path.rfind('/', longest_path);
            path = slash == 0 || slash == std::string_view::npos ? std::string_view("/")
                                                                  : path.substr(0, slash);
        }
        for (;;) {
            if (const auto it = paths.find(path); it != paths.end()) {
                return it->second;
            }
            if (path.size() <= 1) {
                return nullptr;
            }
            const auto slash = path.rfind('/');
            path = slash == 0 ? std::string_view("/") : path.substr(0, slash);
        }
    }

    /// True when every path of the host resolves here, so less specific hosts are never asked.
    bool covers_every_path() const { return is_admin || paths.contains("/"); }
};

/// A literal address rather than a DNS name: IPv6 (has ':') or all digits and dots.
bool is_ip_literal(std::string_view host) noexcept
{
    if (host.find(':') != std::string_view::npos) {
        return true;
    }
    for (char c : host) {
        if ((c < '0' || c > '9') && c != '.') {
            return false;
        }
    }
    return true;
}

// SPEC "Isolation": a loopback address or `localhost` is never a rebinding vector, so
// without a route of its own it shows the admin pages instead of a 404.
bool is_loopback_name(std::string_view host) noexcept
{
    return host == "localhost" || host == "::1" ||
           (host.starts_with("127.") && uri::is_dotted_quad(host));
}

} // namespace

struct route_table::impl {
    std::vector<config::route> routes;
    std::vector<std::string> exact_hosts;
    std::vector<std::string> wildcard_hosts;
    std::string admin;
    string_map<host_entry> exact;    ///< exact host -> entry (the admin host included)
    string_map<host_entry> wildcard; ///< "app.localhost" for "*.app.localhost" -> entry
    std::size_t longest_wildcard = 0; ///< the longest key in `wildcard`

    impl(std::vector<config::route> taken, std::string_view admin_name) : routes(std::move(taken))
    {
        for (const auto& r : routes) {
            auto& hosts = r.is_wildcard() ? wildcard_hosts : exact_hosts;
            auto& map = r.is_wildcard() ? wildcard : exact;
            const std::string key = r.is_wildcard() ? r.host.substr(2) : r.host;
            if (r.is_wildcard()) {
                longest_wildcard = std::max(longest_wildcard, key.size());
            }
            const auto [it, inserted] = map.try_emplace(key);
            if (inserted) {
                hosts.push_back(r.host);
            }
            auto& entry = it->second;
            // Validation rejects a repeated host and path; should one slip through, the
            // first in file order wins, as it would for a reader of the file.
            entry.paths.try_emplace(r.path, &r);
            entry.longest_path = std::max(entry.longest_path, r.path.size());
            if (r.tls_passthrough) {
                if (entry.passthrough == nullptr) {
                    entry.passthrough = &r;
                }
            } else {
                entry.has_terminated = true;
            }
        }
        admin = uri::normalize_host(admin_name).value_or(uri::to_lower(admin_name));
        exact[admin].is_admin = true;
    }

    /**
     * Calls `visit` on each host entry covering `host` (normalised), most specific first: the
     * exact name, then wildcard suffixes from the longest. Returns the first engaged result.
     * A wildcard covers one or more labels, so "*.app.localhost" is probed with the suffixes
     * after each dot and never with the whole name.
     */
    template <typename Visit>
    auto first_decision(std::string_view host, Visit&& visit) const
        -> decltype(visit(std::declval<const host_entry&>()))
    {
        if (const auto it = exact.find(host); it != exact.end()) {
            if (auto decision = visit(it->second)) {
                return decision;
            }
        }
        // Addresses have no labels: "*.0.0.1" must not capture 127.0.0.1.
        if (is_ip_literal(host)) {
            return std::nullopt;
        }
        // Suffixes longer than every wildcard's are not probed (each probe hashes its
        // suffix, and a name of thousands of labels would cost their square).
        const auto first =
            host.size() > longest_wildcard + 1 ? host.size() - longest_wildcard - 1 : 0;
        for (auto dot = host.find('.', first); dot != std::string_view::npos;
             dot = host.find('.', dot + 1)) {
            if (const auto it = wildcard.find(host.substr(dot + 1)); it != wildcard.end()) {
                if (auto decision = visit(it->second)) {
                    return decision;
                }
            }
        }
        return std::nullopt;
    }
};

namespace {

// A request Host is a name or an address, never a pattern; a '*' there is not a wildcard.
// Nor is it longer than any name: a wildcard route would claim it otherwise.
std::optional<std::string> request_host(std::string_view host)
{
    auto name = uri::normalize_host(host);
    if (name && (name->find('*') != std::string::npos || name->size() > uri::max_name_length)) {
        return std::nullopt;
    }
    return name;
}

} // namespace

route_table::route_table(const config::config& cfg)
    : impl_(std::make_unique<impl>(cfg.routes, cfg.admin))
{
}

route_table::route_table(std::vector<config::route> routes, std::string_view admin)
    : impl_(std::make_unique<impl>(std::move(routes), admin))
{
}

route_table::~route_table() = default;
route_table::route_table(route_table&&) noexcept = default;
route_table& route_table::operator=(route_table&&) noexcept = default;

route_match route_table::match(std::string_view host, std::string_view path) const
{
    const auto name = request_host(host);
    if (!name) {
        return {match_kind::invalid_host, nullptr};
    }
    // Host specificity decides first, but a host whose routes all miss the path falls back
    // to the next host that covers the name (e.g. `app.localhost` with only `/api`, under
    // `*.localhost`): adding a path for one name must not take the rest of that name away
    // from the wildcard. Traefik's host+path rules behave so; nginx and Caddy pick a server
    // block by host alone and would answer 404, which surprises exactly this user. The admin
    // host (and, as the last resort, a loopback name) serves every path: nothing falls past.
    const auto decision =
        impl_->first_decision(*name, [&](const host_entry& e) -> std::optional<route_match> {
            if (e.is_admin) {
                return route_match{match_kind::admin, nullptr};
            }
            if (const auto* r = e.find(path)) {
                return route_match{match_kind::route, r};
            }
            return std::nullopt;
        });
    if (decision) {
        return *decision;
    }
    if (is_loopback_name(*name)) {
        return {match_kind::admin, nullptr};
    }
    return {};
}

const config::route* route_table::match_passthrough(std::string_view sni) const
{
    const auto name = request_host(sni);
    if (!name) {
        return nullptr;
    }
    // The choice is made before any path is known, so the most specific host that covers
    // the name decides alone: if it terminates TLS (or is the admin), so does the name.
    const auto decision = impl_->first_decision(
        *name, [](const host_entry& e) -> std::optional<const config::route*> {
            return e.is_admin ? nullptr : e.passthrough;
        });
    return decision.value_or(nullptr);
}

bool route_table::is_served_name(std::string_view sni) const
{
    const auto name = request_host(sni);
    if (!name) {
        return false;
    }
    // Served when some path of the name reaches a terminated route or the admin. An entry
    // that covers every path with passthrough only hides the less specific ones.
    const auto decision =
        impl_->first_decision(*name, [](const host_entry& e) -> std::optional<bool> {
            if (e.is_admin || e.has_terminated) {
                return true;
            }
            if (e.covers_every_path()) {
                return false;
            }
            return std::nullopt;
        });
    if (decision) {
        return *decision;
    }
    return is_loopback_name(*name);
}

const std::vector<config::route>& route_table::routes() const noexcept { return impl_->routes; }

const std::vector<std::string>& route_table::exact_hosts() const noexcept
{
    return impl_->exact_hosts;
}

const std::vector<std::string>& route_table::wildcard_hosts() const noexcept
{
    return impl_->wildcard_hosts;
}

const std::string& route_table::admin_host() const noexcept { return impl_->admin; }

std::optional<split_target> split_request_target(std::string_view target)
{
    // Origin-form only (RFC 9112 §3.2.1): "*" (OPTIONS) and absolute-form have no path to
    // route here; the caller extracts the path of an absolute-form target first. A '#' is
    // not allowed in a request target (fragments are never sent).
    if (target.find('#') != std::string_view::npos) {
        return std::nullopt;
    }
    const auto question = target.find('?');
    auto path = uri::normalize_path(target.substr(0, question));
    if (!path) {
        return std::nullopt;
    }
    split_target out;
    out.path = std::move(*path);
    if (question != std::string_view::npos) {
        out.query = std::string(target.substr(question));
    }
    return out;
}

std::string upstream_target(const config::route& r, const split_target& t)
{
    std::string_view rest = t.path;
    // The root prefix strips nothing; a prefix is only stripped from a path it matched.
    bool stripped = false;
    if (r.strip_prefix && r.path != "/" && rest.starts_with(r.path)) {
        rest.remove_prefix(r.path.size());
        stripped = true;
        if (rest.empty()) {
            rest = "/";
        }
    }
    std::string_view base = r.to.base_path;
    if (!base.empty() && base.back() == '/') {
        base.remove_suffix(1); // "to: http://host:port/" has no base path
    }
    // "/api//evil.example/x" stripped of "/api" would start "//", which many servers read
    // as a host (`new URL("//evil.example/x", base)` in Node, which reads a backslash as a
    // slash too): an open redirect made by portico. One slash is kept; a target the client
    // sent that way is the client's own.
    const bool looks_like_host =
        stripped && base.empty() && rest.size() > 1 && (rest[1] == '/' || rest[1] == '\\');
    if (looks_like_host) {
        rest.remove_prefix(std::min(rest.find_first_not_of("/\\"), rest.size()));
    }
    std::string out;
    out.reserve(base.size() + rest.size() + t.query.size() + 1);
    out += base;
    if (looks_like_host) {
        out += '/';
    }
    out += rest;
    out += t.query;
    return out;
}

} // namespace portico::routing
