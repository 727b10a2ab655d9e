#pragma once

// The validated configuration: plain immutable values, produced only by `config::load_file`,
// `config::parse` or `config::default_config`. Nothing here includes yaml-cpp.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portico::config {

/**
 * A configuration file's name as the user gave it (the path given, not canonical), shared by
 * every position in that file: a file of a thousand routes holds thousands of positions, and
 * a copy of a shared name allocates nothing.
 */
class file_name {
public:
    file_name() = default;
    // Implicit, so that a position reads {"portico.yaml", 3, 5}.
    file_name(std::string name)
        : name_(name.empty() ? nullptr : std::make_shared<const std::string>(std::move(name)))
    {
    }
    file_name(const char* name) : file_name(std::string(name)) {}

    const std::string& str() const noexcept { return name_ ? *name_ : no_name(); }
    operator const std::string&() const noexcept { return str(); }
    bool empty() const noexcept { return name_ == nullptr; }

    friend bool operator==(const file_name& a, const file_name& b) noexcept
    {
        return a.str() == b.str();
    }

private:
    static const std::string& no_name() noexcept;

    std::shared_ptr<const std::string> name_;
};

/// Where a value stands in a configuration file; line and column are 1-based.
struct source_location {
    file_name file;
    int line = 0;
    int column = 0;
};

/// One problem found while loading a configuration file.
struct diagnostic {
    source_location where;
    std::string message;

    /// `file:line:col: message`, or `file: message` when there is no position.
    std::string to_string() const;
};

/// How a listener treats the first bytes of a connection.
enum class tls_mode {
    automatic, ///< `auto`: sniff the first byte, serve TLS or plain HTTP
    only,      ///< TLS only; plain HTTP gets 400 `tls_required`
    off,       ///< plain HTTP only; a ClientHello is closed
};

/// One listening address.
struct listener {
    std::string host;       ///< "127.0.0.1", "::1" (no brackets) or "localhost"
    std::uint16_t port = 0; ///< 0 asks the system for a free port (tests)
    tls_mode tls = tls_mode::automatic;
    source_location where;

    /// `127.0.0.1:7080`, `[::1]:7080`, `localhost:7080`.
    std::string to_string() const;
};

/// How portico reaches a backend.
enum class backend_scheme { http, https, unix_socket };

/// A route's `to`.
struct backend {
    backend_scheme scheme = backend_scheme::http;
    std::string host;                  ///< "127.0.0.1", "::1" (no brackets), "localhost"; empty for unix
    std::uint16_t port = 0;            ///< 0 for unix
    std::string base_path;             ///< "" or a normalised path without trailing '/', e.g. "/v1"
    std::filesystem::path socket_path; ///< unix sockets: absolute, `~`/`${VAR}` expanded
    std::string text;                  ///< `to` as written in the file

    /// `host:port` (`[::1]:port` for IPv6), or "localhost" for unix sockets.
    std::string authority() const;
};

/// One direction's header rules.
struct header_rules {
    std::vector<std::pair<std::string, std::string>> set; ///< name, value; file order
    std::vector<std::string> remove;                       ///< header names

    bool empty() const noexcept { return set.empty() && remove.empty(); }
};

/// What Host header the backend receives.
enum class host_header_policy {
    preserve, ///< the client's Host (default)
    backend,  ///< the `to` address's host:port
    literal,  ///< a fixed value (`route::host_header_value`)
};

/// One routing rule.
struct route {
    std::size_t number = 0; ///< 1-based position in `routes`, as messages name it
    std::string host;       ///< lower case, no trailing dot; wildcard as "*.app.localhost"
    std::string path = "/"; ///< normalised prefix without trailing '/'; "/" when none
    backend to;
    bool strip_prefix = false;
    header_rules request_headers;
    header_rules response_headers;
    host_header_policy host_header = host_header_policy::preserve;
    std::string host_header_value; ///< for `host_header_policy::literal`
    bool insecure_skip_verify = false;
    bool redirect_https = false;
    bool tls_passthrough = false;
    source_location where; ///< the route's entry in the file

    /// True for "*.suffix" hosts.
    bool is_wildcard() const noexcept { return host.size() > 2 && host[0] == '*' && host[1] == '.'; }
    /// "host" when the path is "/", else "host/path" (as metrics and logs name a route).
    std::string name() const;
};

/// A certificate the user provides for some hosts.
struct user_certificate {
    std::vector<std::string> hosts; ///< normalised like route hosts
    std::filesystem::path cert;     ///< absolute
    std::filesystem::path key;      ///< absolute
    source_location where;
    source_location cert_at; ///< the `cert` value, where problems of the certificate point
    source_location key_at;  ///< the `key` value
};

/// The `tls` section.
struct tls_settings {
    std::filesystem::path ca_dir; ///< absolute
    std::vector<std::string> ca_permitted_names{"localhost", "test"};
    /// Where `ca_permitted_names` is written; only the file when it is left at its default.
    source_location permitted_names_at;
    /// Where `ca_dir` is written; the start of the file when it is left at its default.
    source_location ca_dir_at;
    std::vector<user_certificate> certificates;
};

/// The `timeouts` section; zero means no limit where SPEC.md allows it.
struct timeouts {
    std::chrono::milliseconds connect{5000};
    std::chrono::milliseconds header{10000};
    std::chrono::milliseconds idle{60000};
    std::chrono::milliseconds upstream{0};
    std::chrono::milliseconds shutdown{10000};
};

/// The `limits` section.
struct limits {
    std::uint64_t header_bytes = 65536;
    std::uint64_t body_bytes = 0; ///< 0 = unlimited
};

/// A whole configuration.
struct config {
    std::vector<listener> listen; ///< never empty
    bool allow_external = false;
    bool allow_remote_backends = false;
    unsigned workers = 0; ///< 0 = one per core
    tls_settings tls;
    std::string admin = "portico.localhost";
    struct timeouts timeouts;
    struct limits limits;
    std::vector<route> routes;

    /// The file this came from; empty for the built-in default.
    std::filesystem::path source;
    /// Other files the configuration reads (certificates, keys), for reload watching.
    std::vector<std::filesystem::path> referenced_files;
};

/// Reads the process environment; replaceable in tests.
struct environment {
    /// Looks up a variable.
    std::function<std::optional<std::string>(const std::string&)> get;

    /// The real process environment.
    static environment process();
};

/// The outcome of loading a configuration.
struct load_result {
    std::optional<config> value;          ///< set exactly when `errors` is empty
    std::vector<diagnostic> errors;       ///< every error found, in file order
    std::vector<diagnostic> warnings;     ///< valid but probably not what the user meant

    bool ok() const noexcept { return errors.empty(); }
};

/// The built-in configuration used when no file is found.
config default_config(const environment& env = environment::process());

/**
 * Parses and validates YAML text as if read from `file` (which names it in messages and
 * anchors relative paths; it need not exist).
 */
load_result parse(std::string_view text, const std::filesystem::path& file,
                  const environment& env = environment::process());

/// Reads and validates a file; a missing, unreadable, binary or oversized file is an error.
load_result load_file(const std::filesystem::path& file,
                      const environment& env = environment::process());

/// Where the configuration comes from.
struct location {
    std::optional<std::filesystem::path> file; ///< empty: use the built-in default
    std::string origin; ///< "-c", "PORTICO_CONFIG", "./portico.yaml", "./config/portico.yaml", "built-in"
};

/**
 * Applies the lookup order: `-c` (`cli_file`), then `PORTICO_CONFIG`, then
 * `./portico.yaml`, then `./config/portico.yaml` (relative to `cwd`), then the built-in
 * default. A file named by `-c` or `PORTICO_CONFIG` is returned even if it does not exist,
 * so that loading it reports the error.
 */
location locate(const std::optional<std::filesystem::path>& cli_file, const environment& env,
                const std::filesystem::path& cwd);

/// Parses a duration such as "250ms", "30s", "5m", "1h" or "0"; nullopt if invalid.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

/// Parses a size such as "65536", "64KiB", "1MiB", "10MB", "512k"; nullopt if invalid.
std::optional<std::uint64_t> parse_size(std::string_view text);

} // namespace portico::config
