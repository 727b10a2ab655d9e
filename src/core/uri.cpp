#include "portico/core/uri.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <string>

namespace portico::uri {
namespace {

int hex_value(char c) noexcept
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool is_unreserved(unsigned char c) noexcept
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// Decodes percent-encoded unreserved characters and upper-cases the rest (RFC 3986 §6.2.2.1
// and §6.2.2.2), so "/%7Euser" and "/~user" route alike.
std::optional<std::string> decode_unreserved(std::string_view path)
{
    static constexpr std::array<char, 16> digits = {'0', '1', '2', '3', '4', '5', '6', '7',
                                                    '8', '9', 'A', 'B', 'C', 'D', 'E', 'F'};
    std::string out;
    out.reserve(path.size());
    for (std::size_t i = 0; i < path.size(); ++i) {
        const auto c = static_cast<unsigned char>(path[i]);
        if (c <= 0x20 || c == 0x7f) {
            return std::nullopt;
        }
        if (c != '%') {
            out += static_cast<char>(c);
            continue;
        }
        if (i + 2 >= path.size()) {
            return std::nullopt;
        }
        const int hi = hex_value(path[i + 1]);
        const int lo = hex_value(path[i + 2]);
        if (hi < 0 || lo < 0) {
            return std::nullopt;
        }
        const auto decoded = static_cast<unsigned char>(hi * 16 + lo);
        if (is_unreserved(decoded)) {
            out += static_cast<char>(decoded);
        } else {
            out += '%';
            out += digits[static_cast<std::size_t>(hi)];
            out += digits[static_cast<std::size_t>(lo)];
        }
        i += 2;
    }
    return out;
}

// RFC 3986 §5.2.4, on a path that starts with '/'.
std::string remove_dot_segments(std::string_view in)
{
    std::string out;
    out.reserve(in.size());
    while (!in.empty()) {
        if (in.starts_with("/./")) {
            in.remove_prefix(2);
        } else if (in == "/.") {
            in = "/";
        } else if (in.starts_with("/../")) {
            in.remove_prefix(3);
            const auto slash = out.rfind('/');
            out.resize(slash == std::string::npos ? 0 : slash);
        } else if (in == "/..") {
            in = "/";
            const auto slash = out.rfind('/');
            out.resize(slash == std::string::npos ? 0 : slash);
        } else {
            const auto next = in.find('/', 1);
            const auto segment = in.substr(0, next);
            out += segment;
            in.remove_prefix(segment.size());
        }
    }
    return out.empty() ? std::string("/") : out;
}

// The digits after a host's ':' (RFC 3986 §3.2.3); an empty port is refused as it says nothing.
bool is_valid_port(std::string_view port) noexcept
{
    if (port.empty() || port.size() > 5) {
        return false;
    }
    for (char c : port) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

/// For each byte of a DNS-style name, the byte lower-cased, or 0 when a name cannot hold it:
/// letters, digits, '-', '.' and '_' (seen in dev setups).
constexpr auto name_bytes = [] {
    std::array<char, 256> t{};
    for (char c = 'a'; c <= 'z'; ++c) {
        t[static_cast<unsigned char>(c)] = c;
        t[static_cast<unsigned char>(c - 'a' + 'A')] = c;
    }
    for (char c = '0'; c <= '9'; ++c) {
        t[static_cast<unsigned char>(c)] = c;
    }
    t['-'] = '-';
    t['.'] = '.';
    t['_'] = '_';
    return t;
}();

/**
 * A DNS-style name lower-cased, in one pass: non-empty labels of the bytes in `name_bytes`,
 * and '*' only as a whole first label, the wildcard form configuration uses.
 */
std::optional<std::string> lower_name(std::string_view name)
{
    std::string out(name.size(), '\0');
    std::size_t i = 0;
    if (name.starts_with("*.")) {
        out[0] = '*';
        out[1] = '.';
        i = 2;
    }
    char previous = '.'; // a name (or what follows "*.") must not start with a dot
    for (; i < name.size(); ++i) {
        const char c = name_bytes[static_cast<unsigned char>(name[i])];
        if (c == '\0' || (c == '.' && previous == '.')) {
            return std::nullopt;
        }
        out[i] = c;
        previous = c;
    }
    if (previous == '.') { // empty, or ends with a dot
        return std::nullopt;
    }
    return out;
}

/// True for a path that normalising leaves as it is, as almost every request path is: no
/// percent-encoding, no segment starting with a dot, no byte a path cannot hold.
bool is_normal_path(std::string_view path) noexcept
{
    char previous = '\0';
    for (const char c : path) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte <= 0x20 || byte == 0x7f || c == '%' || (c == '.' && previous == '/')) {
            return false;
        }
        previous = c;
    }
    return true;
}

} // namespace

std::optional<std::string> normalize_path(std::string_view path)
{
    if (path.empty() || path.front() != '/') {
        return std::nullopt;
    }
    if (is_normal_path(path)) {
        return std::string(path);
    }
    auto decoded = decode_unreserved(path);
    if (!decoded) {
        return std::nullopt;
    }
    return remove_dot_segments(*decoded);
}

std::optional<std::string> normalize_prefix(std::string_view path)
{
    auto normalised = normalize_path(path);
    if (!normalised) {
        return std::nullopt;
    }
    while (normalised->size() > 1 && normalised->back() == '/') {
        normalised->pop_back();
    }
    return normalised;
}

std::string to_lower(std::string_view text)
{
    std::string out(text);
    for (auto& c : out) {
        c = lower(c);
    }
    return out;
}

/// A Host's port may be empty: `port = *DIGIT` (RFC 3986 §3.2.3).
bool is_port_or_empty(std::string_view port) noexcept
{
    return port.empty() || is_valid_port(port);
}

std::optional<std::string> normalize_host(std::string_view host)
{
    if (host.empty()) {
        return std::nullopt;
    }
    std::string_view name;
    if (host.front() == '[') {
        const auto close = host.find(']');
        if (close == std::string_view::npos || close == 1) {
            return std::nullopt;
        }
        const auto rest = host.substr(close + 1);
        if (!rest.empty() && (rest.front() != ':' || !is_port_or_empty(rest.substr(1)))) {
            return std::nullopt;
        }
        name = host.substr(1, close - 1);
        for (char c : name) {
            if (hex_value(c) < 0 && c != ':' && c != '.') {
                return std::nullopt;
            }
        }
        // One address has many spellings (`0:0:0:0:0:0:0:1` is `::1`): the canonical text
        // (RFC 5952) is what routes and the loopback checks compare.
        const std::string text(name);
        in6_addr address{};
        std::array<char, INET6_ADDRSTRLEN> canonical{};
        if (::inet_pton(AF_INET6, text.c_str(), &address) != 1 ||
            ::inet_ntop(AF_INET6, &address, canonical.data(), canonical.size()) == nullptr) {
            return std::nullopt;
        }
        return std::string(canonical.data());
    } else {
        const auto colon = host.find(':');
        name = host.substr(0, colon);
        if (colon != std::string_view::npos && !is_port_or_empty(host.substr(colon + 1))) {
            return std::nullopt;
        }
        if (!name.empty() && name.back() == '.') {
            name.remove_suffix(1);
        }
        return lower_name(name);
    }
    return to_lower(name);
}

bool is_token(std::string_view text) noexcept
{
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return token_chars[static_cast<unsigned char>(c)];
    });
}

bool is_dotted_quad(std::string_view text) noexcept
{
    int numbers = 0;
    std::size_t i = 0;
    for (;;) {
        const auto start = i;
        unsigned value = 0;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9' && i - start < 3) {
            value = value * 10 + static_cast<unsigned>(text[i] - '0');
            ++i;
        }
        const auto digits = i - start;
        if (digits == 0 || value > 255 || (digits > 1 && text[start] == '0')) {
            return false;
        }
        ++numbers;
        if (i == text.size()) {
            return numbers == 4;
        }
        if (text[i] != '.' || numbers == 4) {
            return false;
        }
        ++i;
    }
}

} // namespace portico::uri
