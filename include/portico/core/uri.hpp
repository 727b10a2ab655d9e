#pragma once

// Path and host canonical forms shared by configuration (configured prefixes and hosts) and
// routing (request targets), so that both sides compare like with like; and the token syntax
// that configured header names, response heads and the header policy's Upgrade protocols
// share.

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace portico::uri {

/**
 * Normalises an origin-form path (RFC 3986 §6.2.2): removes dot segments, decodes
 * percent-encoded unreserved characters, upper-cases the hex digits of the encodings it
 * keeps (`%2F` stays encoded so it never becomes a segment boundary).
 *
 * @return nullopt when `path` does not start with '/', has a malformed percent-encoding, or
 *         contains a control character, space or NUL.
 */
std::optional<std::string> normalize_path(std::string_view path);

/**
 * A path prefix as stored in the route table: normalised, without a trailing '/' (the root
 * is "/"), so that "/api" and "/api/" name the same prefix.
 */
std::optional<std::string> normalize_prefix(std::string_view path);

/// The longest host name there can be, trailing dot aside (RFC 1035 §3.1): routes may not
/// name a longer one, and a request's Host or SNI longer than this is no name at all.
inline constexpr std::size_t max_name_length = 253;

/// Lower-cases ASCII letters.
std::string to_lower(std::string_view text);

/**
 * Canonical host for matching: the port removed (`host:port`, `[v6]:port`), brackets kept
 * off IPv6 literals (which are written in their canonical form, RFC 5952), ASCII lower
 * case, one trailing dot removed.
 *
 * @return nullopt for an empty or syntactically invalid host.
 */
std::optional<std::string> normalize_host(std::string_view host_with_port);

/// tchar (RFC 9110 §5.6.2), by byte: the characters of a token.
inline constexpr std::array<bool, 256> token_chars = [] {
    std::array<bool, 256> t{};
    for (unsigned char c = '0'; c <= '9'; ++c) {
        t[c] = true;
    }
    for (unsigned char c = 'a'; c <= 'z'; ++c) {
        t[c] = true;
        t[c - 'a' + 'A'] = true;
    }
    for (const char c : std::string_view("!#$%&'*+-.^_`|~")) {
        t[static_cast<unsigned char>(c)] = true;
    }
    return t;
}();

/// True when `text` is an RFC 9110 token (§5.6.2): a header field name, a protocol name.
bool is_token(std::string_view text) noexcept;

/// True for an IPv4 literal as inet_pton reads one: four decimal numbers 0-255 without
/// leading zeros (which some resolvers read as octal), so the text is its own canonical form.
bool is_dotted_quad(std::string_view text) noexcept;

} // namespace portico::uri
