#include "config/syntax.hpp"

#include "portico/core/utf8.hpp"

#include "portico/core/uri.hpp"

#include <fmt/format.h>

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <system_error>
#include <vector>

namespace portico::config::detail {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t max_label = 63;
constexpr std::uint32_t max_port = 65535;

std::string to_message()
{
    return fmt::format("'to' must be {}", backend_forms);
}

bool is_digit(char c) noexcept
{
    return c >= '0' && c <= '9';
}

bool is_alpha(char c) noexcept
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool all_digits(std::string_view text) noexcept
{
    return !text.empty() && std::all_of(text.begin(), text.end(), is_digit);
}

// A decimal number of at most 9 digits (enough for ports and counts, never overflows).
std::optional<std::uint32_t> parse_small_decimal(std::string_view text)
{
    if (!all_digits(text) || text.size() > 9) {
        return std::nullopt;
    }
    std::uint32_t value = 0;
    for (char c : text) {
        value = value * 10 + static_cast<std::uint32_t>(c - '0');
    }
    return value;
}

std::size_t count_colons(std::string_view text)
{
    return static_cast<std::size_t>(std::count(text.begin(), text.end(), ':'));
}

/// `host[:port]` or `[v6][:port]`, split without judging the parts.
struct authority_parts {
    std::string_view host;
    bool bracketed = false;
    std::optional<std::string_view> port;
};

std::optional<authority_parts> split_authority(std::string_view text)
{
    authority_parts parts;
    if (text.starts_with('[')) {
        const auto close = text.find(']');
        if (close == std::string_view::npos) {
            return std::nullopt;
        }
        parts.host = text.substr(1, close - 1);
        parts.bracketed = true;
        const auto rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                return std::nullopt;
            }
            parts.port = rest.substr(1);
        }
        return parts;
    }
    const auto colon = text.find(':');
    if (colon == std::string_view::npos) {
        parts.host = text;
        return parts;
    }
    if (text.find(':', colon + 1) != std::string_view::npos) {
        return std::nullopt;
    }
    parts.host = text.substr(0, colon);
    parts.port = text.substr(colon + 1);
    return parts;
}

// A backend or host-header host: IP literal or host name, canonical; the error is a reason.
checked<std::string> parse_plain_host(std::string_view host, bool bracketed)
{
    using result = checked<std::string>;
    if (bracketed) {
        if (auto v6 = canonical_ipv6(host)) {
            return result::success(*v6);
        }
        return result::failure(fmt::format("'[{}]' is not a valid IPv6 address", host));
    }
    if (auto v4 = canonical_ipv4(host)) {
        return result::success(*v4);
    }
    if (auto problem = host_name_problem(host, false); !problem.empty()) {
        return result::failure(fmt::format("host '{}' is not valid: {}", host, problem));
    }
    return result::success(uri::normalize_host(host).value_or(uri::to_lower(host)));
}

char lower(char c) noexcept
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

// Optimal string alignment distance (Levenshtein plus adjacent transpositions), ignoring
// case, so that "rotues" and "Routes" both find "routes".
std::size_t edit_distance(std::string_view a, std::string_view b)
{
    const std::size_t n = a.size();
    const std::size_t m = b.size();
    std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
    for (std::size_t i = 0; i <= n; ++i) {
        d[i][0] = i;
    }
    for (std::size_t j = 0; j <= m; ++j) {
        d[0][j] = j;
    }
    for (std::size_t i = 1; i <= n; ++i) {
        for (std::size_t j = 1; j <= m; ++j) {
            const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
                lower(a[i - 2]) == lower(b[j - 1])) {
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
            }
        }
    }
    return d[n][m];
}

bool is_variable_name(std::string_view name)
{
    if (name.empty() || is_digit(name.front())) {
        return false;
    }
    return std::all_of(name.begin(), name.end(),
                       [](char c) { return is_alpha(c) || is_digit(c) || c == '_'; });
}

struct file_closer {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

std::string errno_text(int error)
{
    return std::generic_category().message(error);
}

} // namespace

std::string too_large_message(std::uintmax_t size)
{
    return fmt::format("is too large ({} bytes; at most 1 MiB)", size);
}

std::optional<text_problem> find_binary_content(std::string_view text)
{
    std::size_t i = 0;
    while (i < text.size()) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c != 0 && c < 0x80) {
            ++i; // ASCII, nearly every byte of a configuration, without a call
            continue;
        }
        if (c == 0) {
            return text_problem{i, "NUL byte"};
        }
        const auto length = utf8::sequence_length(text, i);
        if (length == 0) {
            return text_problem{i, "invalid UTF-8"};
        }
        i += length;
    }
    return std::nullopt;
}

std::string host_name_problem(std::string_view name, bool allow_wildcard)
{
    if (name.ends_with('.')) {
        name.remove_suffix(1);
    }
    if (name.empty()) {
        return "it is empty";
    }
    if (name.size() > uri::max_name_length) {
        return fmt::format("it is longer than {} characters", uri::max_name_length);
    }
    std::size_t index = 0;
    std::string_view last;
    for (std::string_view rest = name;; ++index) {
        const auto dot = rest.find('.');
        const auto label = rest.substr(0, dot);
        last = label;
        if (label.empty()) {
            return "it has an empty label";
        }
        if (label.find('*') != std::string_view::npos) {
            if (!allow_wildcard) {
                return "a wildcard is not allowed here";
            }
            if (label != "*" || index != 0 || dot == std::string_view::npos) {
                return "a wildcard must be the whole first label followed by a domain, "
                       "e.g. *.app.localhost";
            }
        } else {
            if (label.size() > max_label) {
                return fmt::format("label '{}' is longer than {} characters", label, max_label);
            }
            for (char c : label) {
                if (c == ':') {
                    return "a port is not allowed here";
                }
                if (static_cast<unsigned char>(c) >= 0x80) {
                    return "non-ASCII characters are not allowed; use the punycode (xn--) form";
                }
                if (!is_alpha(c) && !is_digit(c) && c != '-') {
                    return fmt::format("'{}' is not allowed; use letters, digits, '-' and '.'", c);
                }
            }
            if (label.front() == '-' || label.back() == '-') {
                return "a label cannot start or end with '-'";
            }
        }
        if (dot == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(dot + 1);
    }
    if (all_digits(last)) {
        return "the last label cannot be all digits";
    }
    return {};
}

std::optional<std::string> canonical_ipv4(std::string_view text)
{
    // Checked by hand rather than through inet_pton and inet_ntop, whose sprintf was the
    // largest cost of reading a route's `to`.
    if (!uri::is_dotted_quad(text)) {
        return std::nullopt;
    }
    return std::string(text);
}

std::optional<std::string> canonical_ipv6(std::string_view text)
{
    // Every IPv6 literal has a colon: host names, the common case, skip the copy and the
    // library call. A NUL would end the text inet_pton reads early.
    if (text.find(':') == std::string_view::npos || text.find('\0') != std::string_view::npos) {
        return std::nullopt;
    }
    const std::string input(text);
    std::array<unsigned char, 16> binary{};
    if (::inet_pton(AF_INET6, input.c_str(), binary.data()) != 1) {
        return std::nullopt;
    }
    std::array<char, INET6_ADDRSTRLEN> out{};
    if (::inet_ntop(AF_INET6, binary.data(), out.data(), out.size()) == nullptr) {
        return std::nullopt;
    }
    return std::string(out.data());
}

bool is_loopback(std::string_view canonical_host)
{
    if (canonical_host == "localhost" || canonical_host == "::1") {
        return true;
    }
    return canonical_host.starts_with("127.") && uri::is_dotted_quad(canonical_host);
}

bool is_ip_literal(std::string_view canonical_host)
{
    return uri::is_dotted_quad(canonical_host) || canonical_ipv6(canonical_host);
}

checked<std::string> parse_host_pattern(std::string_view text, bool allow_wildcard)
{
    using result = checked<std::string>;
    if (const auto scheme = text.find("://"); scheme != std::string_view::npos) {
        return result::failure("write the host name alone, without a scheme such as http://");
    }
    if (text.starts_with('[')) {
        if (!text.ends_with(']')) {
            return result::failure(text.find("]:") != std::string_view::npos
                                       ? "a port is not allowed here"
                                       : "it is not a valid IPv6 address");
        }
        text = text.substr(1, text.size() - 2);
    }
    if (count_colons(text) >= 2) {
        if (auto v6 = canonical_ipv6(text)) {
            return result::success(*v6);
        }
        return result::failure("it is not a valid IPv6 address");
    }
    if (auto v4 = canonical_ipv4(text)) {
        return result::success(*v4);
    }
    if (auto problem = host_name_problem(text, allow_wildcard); !problem.empty()) {
        return result::failure(std::move(problem));
    }
    return result::success(uri::normalize_host(text).value_or(uri::to_lower(text)));
}

checked<listener> parse_listen_address(std::string_view text)
{
    using result = checked<listener>;
    const auto parts = split_authority(text);
    if (!parts && !text.starts_with('[') && count_colons(text) >= 2) {
        return result::failure(fmt::format(
            "address '{}' needs brackets around an IPv6 address, e.g. [::1]:7080", text));
    }
    if (!parts || !parts->port || parts->host.empty() || !all_digits(*parts->port)) {
        return result::failure(fmt::format(
            "address '{}' must be host:port, e.g. 127.0.0.1:7080, [::1]:7080 or localhost:7080",
            text));
    }
    const auto port = parse_small_decimal(*parts->port);
    if (!port || *port > max_port) {
        return result::failure(fmt::format("address '{}': port must be 0..65535", text));
    }
    listener out;
    out.port = static_cast<std::uint16_t>(*port);
    if (parts->bracketed) {
        auto v6 = canonical_ipv6(parts->host);
        if (!v6) {
            return result::failure(
                fmt::format("address '{}': '{}' is not a valid IPv6 address", text, parts->host));
        }
        out.host = *v6;
    } else if (uri::to_lower(parts->host) == "localhost") {
        out.host = "localhost";
    } else if (auto v4 = canonical_ipv4(parts->host)) {
        out.host = *v4;
    } else {
        return result::failure(
            fmt::format("address '{}': host must be an IP address or localhost", text));
    }
    return result::success(std::move(out));
}

checked<backend> parse_backend(std::string_view text)
{
    using result = checked<backend>;
    backend out;
    out.text = std::string(text);
    if (uri::to_lower(text.substr(0, 5)) == "unix:") {
        const auto path = text.substr(5);
        if (path.empty()) {
            return result::failure(to_message());
        }
        out.scheme = backend_scheme::unix_socket;
        out.socket_path = std::string(path);
        return result::success(std::move(out));
    }

    std::string_view rest = text;
    std::optional<std::uint16_t> default_port;
    // Schemes are case-insensitive (RFC 3986 §3.1): HTTP:// is http://.
    const auto scheme_end = rest.find("://");
    const auto scheme =
        scheme_end == std::string_view::npos ? std::string() : uri::to_lower(rest.substr(0, scheme_end));
    if (scheme == "http") {
        rest.remove_prefix(7);
        default_port = 80;
    } else if (scheme == "https") {
        rest.remove_prefix(8);
        out.scheme = backend_scheme::https;
        default_port = 443;
    } else if (rest.find("://") != std::string_view::npos) {
        return result::failure("'to' scheme must be http://, https:// or unix:");
    }

    const auto authority_end = rest.find_first_of("/?#");
    const auto authority = rest.substr(0, authority_end);
    const auto path =
        authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
    if (!path.empty() && !default_port) {
        return result::failure(to_message());
    }
    if (path.find_first_of("?#") != std::string_view::npos) {
        return result::failure("'to' may have a path but no query or fragment");
    }
    const auto parts = split_authority(authority);
    if (!parts && !authority.starts_with('[') && count_colons(authority) >= 2) {
        return result::failure("'to' needs brackets around an IPv6 address, e.g. [::1]:8000");
    }
    if (!parts || parts->host.empty() || authority.find('@') != std::string_view::npos) {
        return result::failure(to_message());
    }

    if (parts->port) {
        if (!all_digits(*parts->port)) {
            return result::failure(to_message());
        }
        const auto port = parse_small_decimal(*parts->port);
        if (!port || *port == 0 || *port > max_port) {
            return result::failure("'to' port must be between 1 and 65535");
        }
        out.port = static_cast<std::uint16_t>(*port);
    } else if (default_port) {
        out.port = *default_port;
    } else {
        return result::failure(to_message());
    }

    auto host = parse_plain_host(parts->host, parts->bracketed);
    if (!host.ok()) {
        return result::failure("'to' " + host.error);
    }
    out.host = std::move(host.value);

    if (!path.empty()) {
        auto base = uri::normalize_prefix(path);
        if (!base) {
            return result::failure(fmt::format("'to' path '{}' is not a valid URL path", path));
        }
        out.base_path = *base == "/" ? std::string() : std::move(*base);
    }
    return result::success(std::move(out));
}

checked<std::string> parse_host_header_value(std::string_view text)
{
    using result = checked<std::string>;
    const auto parts = split_authority(text);
    bool valid =
        parts && !parts->host.empty() && parse_plain_host(parts->host, parts->bracketed).ok();
    if (valid && parts->port) {
        const auto port = parse_small_decimal(*parts->port);
        valid = port && *port >= 1 && *port <= max_port;
    }
    if (!valid) {
        return result::failure("'host_header' must be preserve, backend or a host[:port] such as "
                               "api.localhost or api.localhost:8080");
    }
    return result::success(std::string(text));
}

std::string_view managed_header_reason(std::string_view name)
{
    // RFC 9110 §7.6.1 (Connection and the hop-by-hop fields it implies) and RFC 9112 §6
    // (message framing): portico removes and re-creates these on every hop.
    static constexpr std::array<std::string_view, 8> managed = {
        "content-length", "transfer-encoding", "connection", "upgrade", "keep-alive", "te",
        "trailer",        "proxy-connection"};
    const auto lowered = uri::to_lower(name);
    if (lowered == "host") {
        return "use host_header";
    }
    if (std::find(managed.begin(), managed.end(), lowered) != managed.end()) {
        return "portico manages framing and hop-by-hop headers itself";
    }
    return {};
}

std::optional<std::string_view> suggest(std::string_view unknown,
                                        std::span<const std::string_view> known)
{
    constexpr std::size_t max_distance = 2;
    std::optional<std::string_view> best;
    std::size_t best_distance = max_distance + 1;
    for (const auto candidate : known) {
        const auto distance = edit_distance(unknown, candidate);
        // A distance equal to the candidate's length would "correct" anything short.
        if (distance < best_distance && distance < candidate.size()) {
            best = candidate;
            best_distance = distance;
        }
    }
    return best;
}

checked<fs::path> expand_path(std::string_view text, const environment& env,
                              const fs::path& base_dir)
{
    using result = checked<fs::path>;
    if (text.empty()) {
        return result::failure("the path is empty");
    }
    std::string out;
    std::string_view rest = text;
    if (rest == "~" || rest.starts_with("~/")) {
        const auto home = env.get("HOME");
        if (!home || home->empty()) {
            return result::failure("'~' needs the HOME environment variable, which is not set");
        }
        out = *home;
        rest.remove_prefix(1);
    } else if (rest.starts_with('~')) {
        return result::failure("'~user' paths are not supported; use ~/ or ${VAR}");
    }
    while (!rest.empty()) {
        const auto open = rest.find("${");
        out += rest.substr(0, open);
        if (open == std::string_view::npos) {
            break;
        }
        const auto close = rest.find('}', open + 2);
        if (close == std::string_view::npos) {
            return result::failure("'${' has no closing '}'");
        }
        const auto name = rest.substr(open + 2, close - open - 2);
        if (!is_variable_name(name)) {
            return result::failure(fmt::format("'${{{}}}' is not a valid variable name", name));
        }
        const auto value = env.get(std::string(name));
        if (!value) {
            return result::failure(fmt::format("environment variable '{}' is not set", name));
        }
        out += *value;
        rest.remove_prefix(close + 1);
    }
    fs::path path(out);
    if (path.is_relative()) {
        path = base_dir / path;
    }
    path = path.lexically_normal();
    if (!path.has_filename() && path.has_relative_path()) {
        path = path.parent_path();
    }
    return result::success(std::move(path));
}

listener default_listener()
{
    return listener{"127.0.0.1", 7080, tls_mode::automatic, {}};
}

std::optional<fs::path> default_ca_dir(const environment& env)
{
    // XDG Base Directory: a relative XDG_DATA_HOME is invalid and must be ignored.
    if (const auto xdg = env.get("XDG_DATA_HOME"); xdg && fs::path(*xdg).is_absolute()) {
        return (fs::path(*xdg) / "portico").lexically_normal();
    }
    if (const auto home = env.get("HOME"); home && !home->empty()) {
        return (fs::path(*home) / ".local" / "share" / "portico").lexically_normal();
    }
    return std::nullopt;
}

checked<std::string> read_small_file(const fs::path& file)
{
    using result = checked<std::string>;
    std::error_code ec;
    const auto status = fs::status(file, ec);
    if (status.type() == fs::file_type::not_found) {
        return result::failure("not found");
    }
    if (ec) {
        return result::failure(fmt::format("cannot be read ({})", ec.message()));
    }
    if (fs::is_directory(status)) {
        return result::failure("is a directory");
    }
    if (!fs::is_regular_file(status)) {
        return result::failure("is not a regular file");
    }
    if (const auto size = fs::file_size(file, ec); !ec && size > max_file_bytes) {
        return result::failure(too_large_message(size));
    }
    const std::unique_ptr<std::FILE, file_closer> stream(std::fopen(file.c_str(), "rb"));
    if (!stream) {
        return result::failure(fmt::format("cannot be read ({})", errno_text(errno)));
    }
    // Read in steps rather than into a buffer of the limit's size, which would be zeroed (and
    // its pages touched) for a file of a few hundred bytes; read past the limit so that a
    // file that grew since the size check is still caught.
    std::string text;
    std::array<char, 16 * 1024> chunk; // filled by fread; not zeroed
    for (;;) {
        const auto count = std::fread(chunk.data(), 1, chunk.size(), stream.get());
        text.append(chunk.data(), count);
        if (text.size() > max_file_bytes) {
            return result::failure(too_large_message(text.size()));
        }
        if (count < chunk.size()) {
            break;
        }
    }
    if (std::ferror(stream.get()) != 0) {
        return result::failure(fmt::format("cannot be read ({})", errno_text(errno)));
    }
    return result::success(std::move(text));
}

} // namespace portico::config::detail
