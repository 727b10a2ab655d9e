#pragma once

// Checks on the text of single configuration values, independent of YAML: host names,
// addresses, backends, header names, path expansion and key suggestions, plus the defaults
// and file reads they need. Each check returns the canonical value or a message saying what
// was expected; the caller adds the position.

#include "portico/config/config.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace portico::config::detail {

/// A checked value: `value` is meaningful only when `error` is empty.
template <typename T> struct checked {
    T value{};
    std::string error;

    /// True when `value` holds the result.
    bool ok() const noexcept { return error.empty(); }
    /// A valid value.
    static checked success(T v) { return checked{std::move(v), {}}; }
    /// An invalid value and why.
    static checked failure(std::string why) { return checked{T{}, std::move(why)}; }
};

/// The forms a route's `to` may take, as messages list them.
inline constexpr std::string_view backend_forms = "host:port, http(s)://host:port or unix:/path";

/// The largest configuration (and certificate) file portico reads.
inline constexpr std::uintmax_t max_file_bytes = 1024 * 1024;

/// The longest unix socket path: sockaddr_un::sun_path is 108 bytes on Linux, with the NUL.
inline constexpr std::size_t max_socket_path = 107;

/// "is too large (N bytes; at most 1 MiB)".
std::string too_large_message(std::uintmax_t size);

/// Offset of the first NUL byte or invalid UTF-8 sequence, with what is wrong there.
struct text_problem {
    std::size_t offset = 0;
    std::string_view what;
};

/// Checks that `text` is UTF-8 without NUL bytes; nullopt when it is.
std::optional<text_problem> find_binary_content(std::string_view text);

/**
 * Why `name` is not a valid DNS host name (RFC 1123 labels, one trailing dot allowed), or
 * an empty string when it is. With `allow_wildcard`, "*.suffix" is accepted.
 */
std::string host_name_problem(std::string_view name, bool allow_wildcard);

/// The canonical text of an IPv4 literal, or nullopt.
std::optional<std::string> canonical_ipv4(std::string_view text);

/// The canonical text of an IPv6 literal given without brackets, or nullopt.
std::optional<std::string> canonical_ipv6(std::string_view text);

/// True for 127.0.0.0/8, ::1 and localhost, in canonical form.
bool is_loopback(std::string_view canonical_host);

/**
 * A host as routes, certificates and `admin` name it: a host name (wildcard allowed when
 * asked), an IPv4 literal or an IPv6 literal with or without brackets. Returns the canonical
 * form (lower case, no trailing dot, IPv6 without brackets) or why it is invalid.
 */
checked<std::string> parse_host_pattern(std::string_view text, bool allow_wildcard);

/// True for an IPv4 or IPv6 literal in canonical form.
bool is_ip_literal(std::string_view canonical_host);

/// A listen address: `host:port`, `[v6]:port` with an IP address or localhost.
checked<listener> parse_listen_address(std::string_view text);

/**
 * A route's `to`: `host:port`, `[v6]:port`, `http(s)://host[:port][/base]` or `unix:PATH`.
 * For unix sockets `socket_path` holds PATH as written; the caller expands it.
 */
checked<backend> parse_backend(std::string_view text);

/// A literal `host_header` value: `host[:port]` with a host name or IP address.
checked<std::string> parse_host_header_value(std::string_view text);

/**
 * Why a header may not be set or removed by a route (framing and hop-by-hop headers,
 * which portico itself manages, and Host, which `host_header` controls), or "".
 */
std::string_view managed_header_reason(std::string_view name);

/// The known key closest to `unknown` within edit distance 2, if any.
std::optional<std::string_view> suggest(std::string_view unknown,
                                        std::span<const std::string_view> known);

/**
 * Expands a leading `~` (from HOME) and every `${VAR}`, then makes the result absolute
 * against `base_dir`. Fails naming an unset variable.
 */
checked<std::filesystem::path> expand_path(std::string_view text, const environment& env,
                                           const std::filesystem::path& base_dir);

/// The listener used when `listen` is absent: 127.0.0.1:7080, `tls: auto`.
listener default_listener();

/// `$XDG_DATA_HOME/portico`, else `$HOME/.local/share/portico`; nullopt if neither is set.
std::optional<std::filesystem::path> default_ca_dir(const environment& env);

/**
 * Reads a regular file of at most `max_file_bytes`. On failure `error` completes a sentence
 * that starts with the file name: "not found", "is a directory", "cannot be read (...)".
 */
checked<std::string> read_small_file(const std::filesystem::path& file);

} // namespace portico::config::detail
