#pragma once

// What portico changes in a message head on its way through (RFC 9110 §7.6): hop-by-hop
// fields, X-Forwarded-*, Via, the Host sent upstream and the per-route set/remove rules.
// Pure functions over Beast fields; no sockets.

#include "portico/http/message.hpp"
#include "portico/http/response_head.hpp"

#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portico::http {

/// Per-request facts the upstream request head is rewritten from.
struct forward_facts {
    std::string_view client_ip;     ///< peer address without port, for X-Forwarded-For
    bool client_tls = false;        ///< the request arrived over TLS (X-Forwarded-Proto)
    std::string_view original_host; ///< the client's Host as sent, port included (X-Forwarded-Host)
    std::string_view upstream_host; ///< the Host value the backend receives
    std::string_view target;        ///< the request target sent upstream (origin-form)
    bool upgrade = false;           ///< a tunnelled upgrade: keep `Connection: upgrade` + `Upgrade`
};

/// One direction's route rules, borrowed from the configuration.
struct header_rule_view {
    std::span<const std::pair<std::string, std::string>> set;
    std::span<const std::string> remove;
};

/**
 * Removes hop-by-hop fields (RFC 9110 §7.6.1): those named in `Connection`, and
 * `Connection`, `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
 * `Proxy-Authorization`, `TE` (except `TE: trailers`), `Trailer`, `Transfer-Encoding`, and
 * `Upgrade` unless `keep_upgrade`. The names `Connection` listed are added to
 * `connection_named` when given: they are hop-by-hop in a trailer section too.
 */
void remove_hop_by_hop(fields& f, bool keep_upgrade,
                       std::vector<std::string>* connection_named = nullptr);

/// Applies `remove` then `set` (set replaces every existing field of that name).
void apply_header_rules(fields& f, const header_rule_view& rules);

/**
 * Turns a client request head into the head sent to the backend: hop-by-hop removal,
 * `X-Forwarded-For/Proto/Host` replaced (portico is the edge), `Via: 1.1 portico`
 * appended, Host and target set, HTTP/1.1, route request rules applied last, and for an
 * upgrade `Connection: upgrade` with the protocols of the client's `Upgrade` other than
 * h2c. Framing fields (Content-Length, chunked) are left for the caller to set.
 * `connection_named` as for `remove_hop_by_hop`.
 */
void prepare_upstream_request(request_head& req, const forward_facts& facts,
                              const header_rule_view& route_rules,
                              std::vector<std::string>* connection_named = nullptr);

/**
 * Turns a backend response head into the head sent to the client: hop-by-hop removal
 * (keeping `Upgrade`/`Connection: upgrade` on a 101), `Via: 1.1 portico` appended,
 * route response rules applied last. `connection_named` as for `remove_hop_by_hop`.
 */
void prepare_downstream_response(response_head& res, bool upgrade,
                                 const header_rule_view& route_rules,
                                 std::vector<std::string>* connection_named = nullptr);

/**
 * Appends the head `prepare_upstream_request` would make of `req` (plus, when `drop_expect`,
 * without `Expect`) as the bytes sent upstream, without changing `req`: the fields it keeps
 * are copied in one pass and the new ones appended. Not for upgrades or chunked requests,
 * whose heads a serializer writes. Field order differs from the rewritten head's only
 * between fields of different names.
 */
void append_upstream_request(std::string& out, const request_head& req,
                             const forward_facts& facts, const header_rule_view& route_rules,
                             bool drop_expect);

/**
 * Appends the head `prepare_downstream_response` (not switching protocols) followed by
 * `version(version)` and `keep_alive(keep_alive)` would make of `res`, without changing
 * `res`. Not for chunked re-framing, whose head a serializer writes.
 */
void append_downstream_response(std::string& out, const response_head& res, unsigned version,
                                bool keep_alive, const header_rule_view& route_rules);

/// `append_downstream_response` for a head read in place by `parse_simple_response`.
void append_downstream_response(std::string& out, const simple_response& res, unsigned version,
                                bool keep_alive, const header_rule_view& route_rules);

/// Whether a Transfer-Encoding value is `chunked` alone (OWS around it allowed): the only
/// coding portico frames and unframes; any other would be read differently, or passed on
/// with its coding dropped.
bool is_chunked_alone(std::string_view transfer_encoding) noexcept;

/**
 * Appends the last chunk of a body re-framed as chunked, with the trailer section that a
 * parser read after the chunks: Beast adds those fields to the head's, so they are the
 * fields of `f` that `head_lines` (the head's field elements, sorted by address) does not
 * hold. Left out: hop-by-hop fields (those the head's `Connection` named, `connection_named`,
 * too), `Content-Length` and `Host` (which a recipient merging trailers into the head would
 * act on, RFC 9110 §6.5.1), the fields portico sets as the edge (`X-Forwarded-*`,
 * `Forwarded`, `Via`), and those the route sets or removes.
 */
void append_last_chunk(std::string& out, const fields& f,
                       std::span<const fields::value_type* const> head_lines,
                       const header_rule_view& rules,
                       std::span<const std::string> connection_named = {});

/**
 * What one pass over a request head's field lines tells. Each of these read through the
 * field set would be a search by case-insensitive name, several per request. The views
 * point into the head: valid until it is changed (`prepare_upstream_request`).
 */
struct request_lines {
    unsigned hosts = 0;
    std::string_view host; ///< the first Host line's value
    unsigned transfer_encodings = 0;
    std::string_view transfer_encoding; ///< the last Transfer-Encoding line's value
    /// Content-Length came as more than one line or as a list ("3, 3"), which the parser
    /// accepts when the values agree; such a head must not be forwarded as it came
    /// (RFC 9110 §8.6).
    bool content_length_repeated = false;
    bool has_expect = false;
    std::string_view expect;     ///< the first Expect line's value
    /// The request offers a protocol switch portico tunnels (any protocol but `h2c`).
    bool tunnel_upgrade = false;
    /// `Accept` names `application/json` and not `text/html`.
    bool prefers_json = false;
};

request_lines scan_request_lines(const request_head& req);

/**
 * `request_lines::prefers_json` for the raw bytes of a head, complete or not, that was
 * refused before it was parsed (too large, malformed): Accept lines are found as text.
 */
bool prefers_json_in_raw_head(std::string_view bytes);

} // namespace portico::http
