#include "portico/config/config.hpp"

#include "config/syntax.hpp"

#include <fmt/format.h>

#include <pwd.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <limits>
#include <system_error>
#include <vector>

namespace portico::config {

const std::string& file_name::no_name() noexcept
{
    static const std::string none;
    return none;
}

namespace {

namespace fs = std::filesystem;

/// `host:port`, with brackets around an IPv6 host.
std::string join_host_port(std::string_view host, std::uint16_t port)
{
    if (host.find(':') != std::string_view::npos) {
        return fmt::format("[{}]:{}", host, port);
    }
    return fmt::format("{}:{}", host, port);
}

// HOME is unset under some service managers; the password database still knows the home
// directory, as getpwuid(3) documents for this purpose.
std::optional<std::string> home_from_passwd()
{
    long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
    std::vector<char> buffer(size > 0 ? static_cast<std::size_t>(size) : 16384);
    passwd entry{};
    passwd* found = nullptr;
    if (::getpwuid_r(::getuid(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
        found == nullptr || found->pw_dir == nullptr || found->pw_dir[0] == '\0') {
        return std::nullopt;
    }
    return std::string(found->pw_dir);
}

/// Leading decimal digits as an unsigned 64-bit value; nullopt when absent or on overflow.
struct number_prefix {
    std::uint64_t value = 0;
    std::string_view rest;
};

std::optional<number_prefix> split_number(std::string_view text)
{
    constexpr auto max = std::numeric_limits<std::uint64_t>::max();
    number_prefix out;
    std::size_t i = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        const auto digit = static_cast<std::uint64_t>(text[i] - '0');
        if (out.value > (max - digit) / 10) {
            return std::nullopt;
        }
        out.value = out.value * 10 + digit;
    }
    if (i == 0) {
        return std::nullopt;
    }
    out.rest = text.substr(i);
    return out;
}

/// `value * factor`, or nullopt when it exceeds `max`.
std::optional<std::uint64_t> scale(std::uint64_t value, std::uint64_t factor, std::uint64_t max)
{
    if (value > max / factor) {
        return std::nullopt;
    }
    return value * factor;
}

} // namespace

std::string diagnostic::to_string() const
{
    if (where.line > 0) {
        if (where.file.empty()) {
            return fmt::format("{}:{}: {}", where.line, where.column, message);
        }
        return fmt::format("{}:{}:{}: {}", where.file.str(), where.line, where.column, message);
    }
    if (where.file.empty()) {
        return message;
    }
    return fmt::format("{}: {}", where.file.str(), message);
}

std::string listener::to_string() const
{
    return join_host_port(host, port);
}

std::string backend::authority() const
{
    if (scheme == backend_scheme::unix_socket) {
        return "localhost";
    }
    return join_host_port(host, port);
}

std::string route::name() const
{
    return path == "/" ? host : host + path;
}

environment environment::process()
{
    return environment{[](const std::string& name) -> std::optional<std::string> {
        if (const char* value = std::getenv(name.c_str())) {
            return std::string(value);
        }
        if (name == "HOME") {
            return home_from_passwd();
        }
        return std::nullopt;
    }};
}

config default_config(const environment& env)
{
    config cfg;
    cfg.listen.push_back(detail::default_listener());
    if (auto dir = detail::default_ca_dir(env)) {
        cfg.tls.ca_dir = std::move(*dir);
    } else {
        // Only reachable without HOME and without a password entry; a per-user directory
        // keeps users apart (the TLS module creates it 0700 and must check its owner).
        std::error_code ec;
        cfg.tls.ca_dir = fs::temp_directory_path(ec) / fmt::format("portico-{}", ::getuid());
        if (ec) {
            cfg.tls.ca_dir = fs::path("/tmp") / fmt::format("portico-{}", ::getuid());
        }
    }
    return cfg;
}

location locate(const std::optional<fs::path>& cli_file, const environment& env,
                const fs::path& cwd)
{
    if (cli_file) {
        return {*cli_file, "-c"};
    }
    if (auto named = env.get("PORTICO_CONFIG"); named && !named->empty()) {
        return {fs::path(*named), "PORTICO_CONFIG"};
    }
    struct candidate {
        std::string_view path;
        std::string_view origin;
    };
    static constexpr std::array<candidate, 2> candidates = {{
        {"portico.yaml", "./portico.yaml"},
        {"config/portico.yaml", "./config/portico.yaml"},
    }};
    for (const auto& c : candidates) {
        // An empty cwd keeps the path relative, so messages name "portico.yaml" as typed.
        const auto path = cwd.empty() ? fs::path(c.path) : cwd / c.path;
        std::error_code ec;
        // symlink_status: a dangling symlink is still "the" file, and loading reports it.
        if (fs::exists(fs::symlink_status(path, ec))) {
            return {path, std::string(c.origin)};
        }
    }
    return {std::nullopt, "built-in"};
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text)
{
    using rep = std::chrono::milliseconds::rep;
    const auto number = split_number(text);
    if (!number) {
        return std::nullopt;
    }
    std::uint64_t factor = 0;
    if (number->rest.empty()) {
        // A bare number is ambiguous (seconds? milliseconds?) unless it is zero.
        if (number->value != 0) {
            return std::nullopt;
        }
        factor = 1;
    } else if (number->rest == "ms") {
        factor = 1;
    } else if (number->rest == "s") {
        factor = 1000;
    } else if (number->rest == "m") {
        factor = 60 * 1000;
    } else if (number->rest == "h") {
        factor = 60 * 60 * 1000;
    } else {
        return std::nullopt;
    }
    const auto ms =
        scale(number->value, factor, static_cast<std::uint64_t>(std::numeric_limits<rep>::max()));
    if (!ms) {
        return std::nullopt;
    }
    return std::chrono::milliseconds(static_cast<rep>(*ms));
}

std::optional<std::uint64_t> parse_size(std::string_view text)
{
    struct suffix {
        std::string_view text;
        std::uint64_t factor;
    };
    constexpr std::uint64_t kib = 1024;
    // Single letters are binary, as in nginx; KB/MB/GB are decimal (SI).
    static constexpr std::array<suffix, 13> suffixes = {{
        {"", 1},
        {"k", kib},
        {"K", kib},
        {"KiB", kib},
        {"m", kib * kib},
        {"M", kib * kib},
        {"MiB", kib * kib},
        {"g", kib * kib * kib},
        {"G", kib * kib * kib},
        {"GiB", kib * kib * kib},
        {"KB", 1000},
        {"MB", 1000 * 1000},
        {"GB", 1000 * 1000 * 1000},
    }};
    const auto number = split_number(text);
    if (!number) {
        return std::nullopt;
    }
    for (const auto& s : suffixes) {
        if (number->rest == s.text) {
            return scale(number->value, s.factor, std::numeric_limits<std::uint64_t>::max());
        }
    }
    return std::nullopt;
}

} // namespace portico::config
