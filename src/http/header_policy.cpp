#include "portico/http/header_policy.hpp"

#include "portico/http/head_text.hpp"
#include "portico/core/uri.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace portico::http {
namespace {

/// RFC 9110 §7.6.1 lists Connection, Proxy-Connection, Keep-Alive, TE, Transfer-Encoding and
/// Upgrade; Proxy-Authenticate/-Authorization (§11.7) and Trailer are hop-by-hop too.
/// Transfer-Encoding goes because the caller re-frames the body (RFC 9112 §6.1); TE is
/// reduced to `trailers` and Upgrade kept on an upgrade (see `remove_hop_by_hop`).
constexpr field hop_by_hop_fields[] = {
    field::connection,          field::keep_alive, field::proxy_connection,
    field::proxy_authenticate,  field::proxy_authorization, field::trailer,
    field::transfer_encoding,   field::te,         field::upgrade,
};

constexpr bool is_hop_by_hop(field name) noexcept
{
    for (const auto hop : hop_by_hop_fields) {
        if (name == hop) {
            return true;
        }
    }
    return false;
}

/// The pseudonym portico names itself by in `Via` (RFC 9110 §7.6.3).
constexpr std::string_view via_pseudonym = "portico";

/// The prefix of the forwarding fields portico sets as the edge (lower case).
constexpr std::string_view x_forwarded = "x-forwarded-";

/// Longest field value Beast stores (its element offsets are 16 bits); see `append_to_list`.
constexpr std::size_t max_field_value = std::numeric_limits<std::uint16_t>::max() - 2;

std::string_view trim_ows(std::string_view s) noexcept
{
    const auto first = s.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = s.find_last_not_of(" \t");
    return s.substr(first, last - first + 1);
}

/**
 * Calls `visit` with each non-empty item of a comma-separated field value (RFC 9110 §5.6.1),
 * OWS trimmed, commas inside quoted strings (§5.6.4) kept, until `visit` returns true.
 * Hand-written because Beast's `token_list` stops at the first element that is not a bare
 * token, and media ranges (`application/json;q=0.9`), t-codings and `protocol/version` are
 * not. Nothing is allocated: this runs on every request that carries Accept.
 */
template <typename Visit>
void for_each_item(std::string_view value, Visit&& visit)
{
    bool quoted = false;
    std::size_t start = 0;
    std::size_t i = 0;
    while (i < value.size()) {
        const char c = value[i];
        if (quoted && c == '\\') {
            i += 2; // quoted-pair: the next character is literal
            continue;
        }
        if (c == '"') {
            quoted = !quoted;
        } else if (c == ',' && !quoted) {
            const auto item = trim_ows(value.substr(start, i - start));
            start = i + 1;
            if (!item.empty() && visit(item)) {
                return;
            }
        }
        ++i;
    }
    const auto last = trim_ows(value.substr(std::min(start, value.size())));
    if (!last.empty()) {
        visit(last);
    }
}

/// The name of a list element without its `;parameters`.
std::string_view item_name(std::string_view item) noexcept
{
    return trim_ows(item.substr(0, item.find(';')));
}

/// The `;parameters` of a list element (empty when it has none), in Beast's `param_list` form.
std::string_view item_params(std::string_view item) noexcept
{
    const auto semi = item.find(';');
    return semi == std::string_view::npos ? std::string_view{} : item.substr(semi);
}

/// True for a qvalue of zero ("0", "0.", "0.000"), which means "not acceptable" (RFC 9110
/// §12.4.2).
bool is_zero_qvalue(std::string_view q) noexcept
{
    if (q.empty() || q.front() != '0') {
        return false;
    }
    q.remove_prefix(1);
    if (q.empty()) {
        return true;
    }
    return q.front() == '.' && q.find_first_not_of('0', 1) == std::string_view::npos;
}

/// True when the element carries `q=0`, i.e. the client refuses what it names.
bool is_refused(std::string_view item)
{
    for (const auto& param : beast::http::param_list{item_params(item)}) {
        if (beast::iequals(param.first, "q")) {
            return is_zero_qvalue(param.second);
        }
    }
    return false;
}

/**
 * True for a connection option that must not delete the field of the same name. `Host` and
 * `Content-Length` carry routing and framing: a client naming them in `Connection` would
 * otherwise make portico forward a request without a Host or with a body it cannot frame.
 * `TE` has its own rule (its sender must name it in `Connection`, RFC 9110 §10.1.4, which
 * would defeat the `TE: trailers` exception), and `Upgrade` is named on every upgrade.
 */
bool is_protected_option(std::string_view option, bool keep_upgrade) noexcept
{
    return beast::iequals(option, "host") || beast::iequals(option, "content-length") ||
           beast::iequals(option, "te") || (keep_upgrade && beast::iequals(option, "upgrade"));
}

/**
 * Keeps `TE` only as `TE: trailers`. Transfer codings are negotiated per connection (RFC 9110
 * §10.1.4), so the client's codings say nothing about portico's upstream connection; the
 * `trailers` keyword is end-to-end knowledge (gRPC relies on it), so it survives alone.
 */
void reduce_te_to_trailers(fields& f)
{
    bool trailers = false;
    for (auto [line, last] = f.equal_range(field::te); line != last && !trailers; ++line) {
        for_each_item(line->value(), [&](std::string_view item) {
            trailers = beast::iequals(item_name(item), "trailers");
            return trailers;
        });
    }
    f.erase(field::te);
    if (trailers) {
        f.set(field::te, "trailers");
    }
}

/**
 * Appends `value` to the comma-separated list in `name`, joining existing field lines into
 * one: several lines with one name mean the same as one line joining them with commas (RFC
 * 9110 §5.3). If the joined line would exceed what Beast can store, the value goes on a
 * line of its own after the others instead, which means the same.
 */
void append_to_list(fields& f, field name, std::string_view value)
{
    if (f.find(name) == f.end()) {
        f.insert(name, value);
        return;
    }
    std::string joined;
    for (auto [line, last] = f.equal_range(name); line != last; ++line) {
        joined.append(line->value()).append(", ");
    }
    if (joined.size() + value.size() > max_field_value) {
        f.insert(name, value);
        return;
    }
    joined.append(value);
    f.set(name, joined);
}

/// Adds portico's hop to `Via`, naming the protocol version it received (RFC 9110 §7.6.3).
void append_via(fields& f, unsigned received_version)
{
    // Short enough for the string's inline storage: no allocation.
    std::string value;
    value += static_cast<char>('0' + received_version / 10 % 10);
    value += '.';
    value += static_cast<char>('0' + received_version % 10);
    value += ' ';
    value += via_pseudonym;
    append_to_list(f, field::via, value);
}

/**
 * Removes what earlier hops claim about the request: `Forwarded` (RFC 7239) and every
 * `X-Forwarded-*` field. portico is the edge, so a client sending them is spoofing, and a
 * leftover `Forwarded` or `X-Forwarded-Port` would contradict the values portico sets.
 */
/**
 * True for a name that starts `X-Forwarded-`, in any case, with `_` for any `-`: CGI, WSGI
 * and Rack servers read `X_Forwarded_For` as `X-Forwarded-For` (both become
 * HTTP_X_FORWARDED_FOR), so such a line would pass a client's claim on behind portico's.
 */
bool is_x_forwarded_name(std::string_view name) noexcept
{
    if (name.size() < x_forwarded.size()) {
        return false;
    }
    for (std::size_t i = 0; i < x_forwarded.size(); ++i) {
        const char c = name[i];
        const char lower = c == '_' ? '-' : (c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
        if (lower != x_forwarded[i]) { // x_forwarded is lower case
            return false;
        }
    }
    return true;
}

void remove_forwarding_claims(fields& f)
{
    f.erase(field::forwarded);
    for (auto it = f.begin(); it != f.end();) {
        if (is_x_forwarded_name(it->name_string())) {
            it = f.erase(it);
        } else {
            ++it;
        }
    }
}

/**
 * Which of a head's field lines a rewrite drops: the hop-by-hop fields and those the
 * `Connection` options name (RFC 9110 §7.6.1), the route's removed and set names, and the
 * caller's own (Host, Via, forwarding claims). Built by reading the head once; the names
 * point into the head, which is not modified.
 */
class field_filter {
public:
    /// `f`: Beast fields, or the lines of a `simple_response`.
    template <typename Lines>
    field_filter(const Lines& f, const header_rule_view& rules) : rules_(rules)
    {
        for (const auto& line : f) {
            const auto name = line.name();
            if (name == field::connection) {
                for (const auto option : beast::http::token_list{line.value()}) {
                    if (is_protected_option(option, false)) {
                        continue;
                    }
                    if (count_ < std::size(named_)) {
                        named_[count_++] = option;
                    } else {
                        overflow_ = true;
                    }
                }
            } else if (name == field::via) {
                has_via_ = true;
            } else if (name == field::te && !te_trailers_) {
                for_each_item(line.value(), [this](std::string_view item) {
                    te_trailers_ = beast::iequals(item_name(item), "trailers");
                    return te_trailers_;
                });
            }
        }
        if (overflow_) {
            // More options than fit inline (unusual): collect them all.
            for (const auto& line : f) {
                if (line.name() != field::connection) {
                    continue;
                }
                for (const auto option : beast::http::token_list{line.value()}) {
                    if (!is_protected_option(option, false)) {
                        more_.emplace_back(option);
                    }
                }
            }
        }
    }

    /// True for a line that is hop-by-hop, named by `Connection`, or named by a route rule.
    template <typename Line>
    bool drops(const Line& line) const
    {
        if (is_hop_by_hop(line.name())) {
            return true;
        }
        const auto text = line.name_string();
        for (std::size_t i = 0; i < count_; ++i) {
            if (text.size() == named_[i].size() && beast::iequals(text, named_[i])) {
                return true;
            }
        }
        for (const auto& option : more_) {
            if (beast::iequals(text, option)) {
                return true;
            }
        }
        return is_ruled(text);
    }

    /// True when a route rule removes or sets `name`: the rule decides its value.
    bool is_ruled(std::string_view name) const
    {
        for (const auto& removed : rules_.remove) {
            if (beast::iequals(name, removed)) {
                return true;
            }
        }
        for (const auto& [set, value] : rules_.set) {
            if (beast::iequals(name, set)) {
                return true;
            }
        }
        return false;
    }

    /// True when a `TE` line carried `trailers`, which survives alone (see reduce_te_to_trailers).
    bool te_trailers() const noexcept { return te_trailers_; }

    /// True when the head carries `Via`.
    bool has_via() const noexcept { return has_via_; }

private:
    const header_rule_view& rules_;
    std::array<beast::string_view, 4> named_{};
    std::size_t count_ = 0;
    bool overflow_ = false;
    std::vector<std::string> more_;
    bool te_trailers_ = false;
    bool has_via_ = false;
};

/// Appends a field portico adds unless a route rule removes or sets it.
void append_added(std::string& out, const field_filter& filter, std::string_view name,
                  std::string_view value)
{
    if (!filter.is_ruled(name)) {
        append_field(out, name, value);
    }
}

/// Appends `Via` with the kept Via lines joined and portico's hop last (RFC 9110 §7.6.3).
template <typename Lines>
void append_joined_via(std::string& out, const Lines& f, const field_filter& filter,
                       unsigned received_version)
{
    if (filter.is_ruled("Via")) {
        return;
    }
    out += "Via: ";
    if (filter.has_via()) {
        for (const auto& line : f) {
            if (line.name() == field::via && !filter.drops(line)) {
                out.append(line.value());
                out += ", ";
            }
        }
    }
    // "1.1 portico\r\n" in one append.
    char hop[4 + via_pseudonym.size() + 2];
    hop[0] = static_cast<char>('0' + received_version / 10 % 10);
    hop[1] = '.';
    hop[2] = static_cast<char>('0' + received_version % 10);
    hop[3] = ' ';
    via_pseudonym.copy(hop + 4, via_pseudonym.size());
    hop[sizeof(hop) - 2] = '\r';
    hop[sizeof(hop) - 1] = '\n';
    out.append(hop, sizeof(hop));
}

/// Appends the route's set rules; of two rules for one name the later wins, as with `set`.
void append_rule_fields(std::string& out, const header_rule_view& rules,
                        std::string_view skipped = {})
{
    for (std::size_t i = 0; i < rules.set.size(); ++i) {
        const auto& [name, value] = rules.set[i];
        bool later = !skipped.empty() && beast::iequals(name, skipped);
        for (std::size_t j = i + 1; j < rules.set.size() && !later; ++j) {
            later = beast::iequals(name, rules.set[j].first);
        }
        if (!later) {
            append_field(out, name, value);
        }
    }
}

bool is_forwarding_claim(const fields::value_type& line)
{
    return line.name() == field::forwarded || is_x_forwarded_name(line.name_string());
}

/// protocol = protocol-name ["/" protocol-version], both tokens (RFC 9110 §7.8).
bool is_protocol(std::string_view item) noexcept
{
    const auto slash = item.find('/');
    return uri::is_token(item.substr(0, slash)) &&
           (slash == std::string_view::npos || uri::is_token(item.substr(slash + 1)));
}

/// Whether an Upgrade item names h2c, HTTP/2 cleartext, which portico does not speak.
bool is_h2c(std::string_view item)
{
    return beast::iequals(item.substr(0, item.find('/')), "h2c");
}

/// Whether an Upgrade value offers a protocol portico tunnels. A client that offers h2c and
/// something else (`h2c, websocket`) gets the rest; h2c alone is answered as plain HTTP/1.1
/// instead (RFC 9113 §3.1), and so is a value that names no protocol.
bool offers_tunnelled_protocol(std::string_view upgrade)
{
    bool offered = false;
    for_each_item(upgrade, [&offered](std::string_view item) {
        offered = is_protocol(item) && !is_h2c(item);
        return offered;
    });
    return offered;
}

/**
 * On an upgrade, the backend is offered only what portico tunnels: an h2c offered beside
 * them would let a backend switch to a protocol portico cannot carry. Each Upgrade line is
 * filtered on its own and its items joined with a bare comma, so that no line grows past
 * what the parser accepted. Nothing is rewritten when no h2c is there.
 */
void drop_h2c_offers(fields& f)
{
    bool any_h2c = false;
    std::vector<std::string> kept_lines;
    for (const auto& line : f) {
        if (line.name() != field::upgrade) {
            continue;
        }
        std::string kept;
        for_each_item(line.value(), [&](std::string_view item) {
            if (is_h2c(item)) {
                any_h2c = true;
            } else if (is_protocol(item)) {
                kept.append(kept.empty() ? "" : ",").append(item);
            }
            return false;
        });
        kept_lines.push_back(std::move(kept));
    }
    if (!any_h2c) {
        return;
    }
    f.erase(field::upgrade);
    for (const auto& kept : kept_lines) {
        if (!kept.empty()) {
            f.insert(field::upgrade, kept);
        }
    }
    // The h2c upgrade's settings (RFC 7540 §3.2.1) mean nothing without it.
    f.erase("HTTP2-Settings");
}

} // namespace

void append_upstream_request(std::string& out, const request_head& req,
                             const forward_facts& facts, const header_rule_view& route_rules,
                             bool drop_expect)
{
    const field_filter filter(req, route_rules);
    const auto method = req.method_string();
    out.append(method.data(), method.size());
    out += ' ';
    out.append(facts.target);
    out += " HTTP/1.1\r\n";
    for (const auto& line : req) {
        const auto name = line.name();
        if (name == field::host || name == field::via || (drop_expect && name == field::expect) ||
            is_forwarding_claim(line) || filter.drops(line)) {
            continue;
        }
        append_field(out, line);
    }
    if (filter.te_trailers()) {
        append_field(out, "TE", "trailers");
    }
    if (!facts.client_ip.empty()) {
        append_added(out, filter, "X-Forwarded-For", facts.client_ip);
    }
    append_added(out, filter, "X-Forwarded-Proto", facts.client_tls ? "https" : "http");
    if (!facts.original_host.empty()) {
        append_added(out, filter, "X-Forwarded-Host", facts.original_host);
    }
    append_joined_via(out, req, filter, req.version());
    append_field(out, "Host", facts.upstream_host);
    append_rule_fields(out, route_rules, drop_expect ? "Expect" : "");
    out += "\r\n";
}

namespace {

template <typename Lines>
void append_response(std::string& out, unsigned status, std::string_view reason,
                     unsigned received_version, const Lines& res, unsigned version,
                     bool keep_alive, const header_rule_view& route_rules)
{
    const field_filter filter(res, route_rules);
    append_status_line(out, version, status, reason);
    if constexpr (std::is_same_v<Lines, simple_response>) {
        // A kept line already written as "name: value" CRLF (as good as every line) goes
        // out as received, and consecutive ones in one copy: for a typical head one append
        // instead of four per field. Any other is written anew, as from Beast's fields.
        std::string_view run; ///< kept lines, adjacent in the received head, not yet written
        for (const auto& line : res) {
            if (line.name() == field::via || filter.drops(line)) {
                continue; // the next kept line is not adjacent to the run: it ends it
            }
            const auto text = line.canonical_text();
            if (!text.empty() && run.data() + run.size() == text.data()) {
                run = std::string_view(run.data(), run.size() + text.size());
                continue;
            }
            out.append(run);
            run = text;
            if (text.empty()) {
                append_field(out, line.name_string(), line.value());
            }
        }
        out.append(run);
    } else {
        for (const auto& line : res) {
            if (line.name() == field::via || filter.drops(line)) {
                continue;
            }
            append_field(out, line);
        }
    }
    if (filter.te_trailers()) {
        append_field(out, "TE", "trailers");
    }
    append_joined_via(out, res, filter, received_version);
    append_rule_fields(out, route_rules);
    // What `keep_alive()` adds once Connection is gone (RFC 9112 §9.3): persistence is the
    // default in HTTP/1.1 and must be asked for in HTTP/1.0.
    if (version >= 11 && !keep_alive) {
        out += "Connection: close\r\n";
    } else if (version < 11 && keep_alive) {
        out += "Connection: keep-alive\r\n";
    }
    out += "\r\n";
}

} // namespace

void append_downstream_response(std::string& out, const response_head& res, unsigned version,
                                bool keep_alive, const header_rule_view& route_rules)
{
    append_response(out, res.result_int(), reason_of(res), res.version(), res, version,
                    keep_alive, route_rules);
}

void append_downstream_response(std::string& out, const simple_response& res, unsigned version,
                                bool keep_alive, const header_rule_view& route_rules)
{
    const auto reason = res.reason.empty() ? standard_reason(res.status) : res.reason;
    append_response(out, res.status, reason, res.version, res, version, keep_alive, route_rules);
}

bool is_chunked_alone(std::string_view transfer_encoding) noexcept
{
    return beast::iequals(trim_ows(transfer_encoding), "chunked");
}

void append_last_chunk(std::string& out, const fields& f,
                       std::span<const fields::value_type* const> head_lines,
                       const header_rule_view& rules, std::span<const std::string> connection_named)
{
    out.append("0\r\n");
    for (const auto& line : f) {
        if (std::binary_search(head_lines.begin(), head_lines.end(), &line)) {
            continue;
        }
        const auto name = line.name();
        const auto text = line.name_string();
        if (name == field::via || is_forwarding_claim(line) || is_hop_by_hop(name) || name == field::content_length ||
            name == field::host) {
            continue;
        }
        const auto named = [&text](std::string_view n) { return beast::iequals(n, text); };
        if (std::any_of(connection_named.begin(), connection_named.end(), named) ||
            std::any_of(rules.remove.begin(), rules.remove.end(), named) ||
            std::any_of(rules.set.begin(), rules.set.end(),
                        [&named](const auto& kv) { return named(kv.first); })) {
            continue;
        }
        append_field(out, line);
    }
    out.append("\r\n");
}

void remove_hop_by_hop(fields& f, bool keep_upgrade, std::vector<std::string>* connection_named)
{
    // One pass finds which hop-by-hop fields the head carries (usually one or two): each
    // `erase` by name is a case-insensitive tree lookup, worth sparing for absent fields.
    unsigned present = 0;
    for (const auto& line : f) {
        const auto name = line.name();
        for (std::size_t i = 0; name != field::unknown && i < std::size(hop_by_hop_fields); ++i) {
            if (name == hop_by_hop_fields[i]) {
                present |= 1U << i;
            }
        }
    }
    const auto has = [present](field name) {
        for (std::size_t i = 0; i < std::size(hop_by_hop_fields); ++i) {
            if (hop_by_hop_fields[i] == name) {
                return (present & (1U << i)) != 0;
            }
        }
        return false;
    };
    if (present == 0) {
        return;
    }

    if (has(field::connection)) {
        // Collect first: the option names point into Connection values that erasing frees.
        std::vector<std::string> named;
        for (auto [line, last] = f.equal_range(field::connection); line != last; ++line) {
            for (const auto option : beast::http::token_list{line->value()}) {
                if (!is_protected_option(option, keep_upgrade)) {
                    named.emplace_back(option);
                }
            }
        }
        for (const auto& name : named) {
            f.erase(name);
        }
        if (connection_named != nullptr) {
            std::move(named.begin(), named.end(), std::back_inserter(*connection_named));
        }
    }

    for (const auto name : hop_by_hop_fields) {
        if (!has(name) || name == field::te || (keep_upgrade && name == field::upgrade)) {
            continue;
        }
        f.erase(name);
    }
    if (has(field::te)) {
        reduce_te_to_trailers(f);
    }
}

void apply_header_rules(fields& f, const header_rule_view& rules)
{
    for (const auto& name : rules.remove) {
        f.erase(name);
    }
    for (const auto& [name, value] : rules.set) {
        f.set(name, value);
    }
}

void prepare_upstream_request(request_head& req, const forward_facts& facts,
                              const header_rule_view& route_rules,
                              std::vector<std::string>* connection_named)
{
    const unsigned received_version = req.version();

    remove_hop_by_hop(req, facts.upgrade, connection_named);
    remove_forwarding_claims(req);
    // remove_forwarding_claims left none of these, so inserting is setting.
    if (!facts.client_ip.empty()) {
        req.insert("X-Forwarded-For", facts.client_ip);
    }
    req.insert("X-Forwarded-Proto", facts.client_tls ? "https" : "http");
    if (!facts.original_host.empty()) {
        req.insert("X-Forwarded-Host", facts.original_host);
    }
    append_via(req, received_version);
    req.set(field::host, facts.upstream_host);
    req.target(facts.target);

    // Upstream is always HTTP/1.1, where persistence is the default (RFC 9112 §9.3), so only
    // an upgrade needs a Connection field: the Upgrade option must be named (RFC 9110 §7.8).
    req.version(11);
    if (facts.upgrade) {
        req.set(field::connection, "upgrade");
        drop_h2c_offers(req);
    }

    apply_header_rules(req, route_rules);
}

void prepare_downstream_response(response_head& res, bool upgrade,
                                 const header_rule_view& route_rules,
                                 std::vector<std::string>* connection_named)
{
    // Only a 101 switches protocols (RFC 9110 §15.2.2); any other answer to an upgrade
    // request is an ordinary response whose Upgrade field is merely advertised.
    const bool switching = upgrade && res.result() == status::switching_protocols;

    remove_hop_by_hop(res, switching, connection_named);
    if (switching) {
        res.set(field::connection, "upgrade");
    }
    append_via(res, res.version());
    apply_header_rules(res, route_rules);
    // Beast's serializer writes a head with no reason phrase with the standard one, and
    // with "<unknown-status>" for a code it does not know; a blank phrase is as valid as
    // none (RFC 9112 §4) and says nothing false.
    if (res.result() == status::unknown && reason_of(res).empty()) {
        res.reason(" ");
    }
}

namespace {

/// Notes whether an Accept value names JSON and HTML (items refused with q=0 do not count).
void weigh_accept(std::string_view value, bool& json, bool& html)
{
    for_each_item(value, [&](std::string_view item) {
        if (!is_refused(item)) {
            const auto media = item_name(item);
            json = json || beast::iequals(media, "application/json");
            html = html || beast::iequals(media, "text/html");
        }
        return false;
    });
}

} // namespace

bool prefers_json_in_raw_head(std::string_view bytes)
{
    constexpr std::string_view name = "accept:";
    bool json = false;
    bool html = false;
    while (!bytes.empty()) {
        const auto end = bytes.find('\n');
        auto line = bytes.substr(0, end);
        bytes = end == std::string_view::npos ? std::string_view{} : bytes.substr(end + 1);
        if (line.size() > name.size() && beast::iequals(line.substr(0, name.size()), name)) {
            if (line.ends_with('\r')) {
                line.remove_suffix(1);
            }
            weigh_accept(line.substr(name.size()), json, html);
        }
    }
    return json && !html;
}

request_lines scan_request_lines(const request_head& req)
{
    request_lines lines;
    bool connection_upgrade = false;
    bool offers_tunnel = false;
    bool json = false;
    bool html = false;
    unsigned content_lengths = 0;
    for (const auto& line : req) {
        switch (line.name()) {
        case field::content_length:
            ++content_lengths;
            lines.content_length_repeated =
                lines.content_length_repeated || content_lengths > 1 ||
                line.value().find(',') != beast::string_view::npos;
            break;
        case field::host:
            if (lines.hosts++ == 0) {
                lines.host = line.value();
            }
            break;
        case field::transfer_encoding:
            ++lines.transfer_encodings;
            lines.transfer_encoding = line.value();
            break;
        case field::expect:
            if (!lines.has_expect) {
                lines.has_expect = true;
                lines.expect = line.value();
            }
            break;
        case field::connection:
            connection_upgrade =
                connection_upgrade || beast::http::token_list{line.value()}.exists("upgrade");
            break;
        case field::upgrade:
            // Lines of one field are one list (RFC 9110 §5.3).
            offers_tunnel = offers_tunnel || offers_tunnelled_protocol(line.value());
            break;
        case field::accept:
            weigh_accept(line.value(), json, html);
            break;
        default:
            break;
        }
    }
    // A server must ignore Upgrade in an HTTP/1.0 request (RFC 9110 §7.8).
    lines.tunnel_upgrade = req.version() >= 11 && connection_upgrade && offers_tunnel;
    lines.prefers_json = json && !html;
    return lines;
}

} // namespace portico::http
