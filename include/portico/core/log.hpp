#pragma once

// The one logging facade. Call sites pass a level, an event name and key/value fields; the
// level is checked before anything is formatted, so a filtered line costs one comparison.

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace portico::log {

/// Severity, in increasing order.
enum class level { debug, info, warn, error, off };

/// Output encoding of every line on stderr.
enum class format { text, json };

/// Parses "debug", "info", "warn", "error"; nullopt otherwise.
std::optional<level> parse_level(std::string_view text) noexcept;
/// Parses "text" or "json"; nullopt otherwise.
std::optional<format> parse_format(std::string_view text) noexcept;

/// Sets the threshold and encoding. Call before worker threads start.
void configure(level threshold, format encoding) noexcept;

/// The configured encoding.
format current_format() noexcept;

namespace detail {
extern level threshold;
} // namespace detail

/// True when a line of this level would be written.
inline bool enabled(level lv) noexcept { return lv >= detail::threshold; }

/// One key/value pair of a log line.
struct field {
    using value_type = std::variant<std::string_view, std::int64_t, std::uint64_t, double, bool>;

    field(std::string_view k, std::string_view v) : key(k), value(v) {}
    field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
    field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
    field(std::string_view k, int v) : key(k), value(std::int64_t{v}) {}
    field(std::string_view k, long v) : key(k), value(std::int64_t{v}) {}
    field(std::string_view k, long long v) : key(k), value(std::int64_t{v}) {}
    field(std::string_view k, unsigned v) : key(k), value(std::uint64_t{v}) {}
    field(std::string_view k, unsigned long v) : key(k), value(std::uint64_t{v}) {}
    field(std::string_view k, unsigned long long v) : key(k), value(std::uint64_t{v}) {}
    field(std::string_view k, double v) : key(k), value(v) {}
    field(std::string_view k, bool v) : key(k), value(v) {}

    std::string_view key;
    value_type value;
};

/**
 * Writes one event line: text `TIME LEVEL event key=value ...`, or a JSON object with
 * `time`, `level`, `event` and the fields. Prefer `PORTICO_LOG`, which skips the call
 * (and the construction of its fields) when the level is filtered out.
 */
void write(level lv, std::string_view event, std::initializer_list<field> fields);

/**
 * Writes a line meant for a person at info level: in text mode `message` alone (e.g.
 * "portico ready: http on 127.0.0.1:7080 (3 routes)"), in JSON mode an object with
 * `event` and the fields.
 */
void notice(std::string_view event, std::string_view message, std::initializer_list<field> fields);

/// As `notice`, but written at every log level: the ready lines, which scripts wait for.
void announce(std::string_view event, std::string_view message,
              std::initializer_list<field> fields);

/**
 * Writes `text` as a line of its own on stderr, as the events are (a message formatted for
 * a person: a configuration diagnostic, a failed reload).
 */
void write_line(std::string_view text);

/**
 * While it lives, lines are written to stderr by a thread of their own, so that a stderr
 * nobody reads does not stop the threads that log; a bounded number of bytes wait, and
 * lines beyond them are dropped and counted (event `log_lines_dropped`). Its destruction
 * writes what waits, for at most two seconds. One at a time, made before the threads that
 * log start and destroyed after they end.
 */
class background_writer {
public:
    background_writer();
    ~background_writer();
    background_writer(const background_writer&) = delete;
    background_writer& operator=(const background_writer&) = delete;
};

/// One proxied request, as the access log and the admin's recent-requests list see it.
struct access_record {
    std::chrono::system_clock::time_point time;
    std::string_view client;  ///< ip:port
    std::string_view host;    ///< Host as sent
    std::string_view method;
    std::string_view target;  ///< request target as sent
    std::string_view proto;   ///< "HTTP/1.1"
    unsigned status = 0;
    std::uint64_t bytes = 0;  ///< response body bytes sent
    double duration_ms = 0;
    std::string_view route;   ///< "host" or "host/path"; empty when none
    std::string_view backend; ///< empty when no backend was reached
};

/// Renders an access record as one text line (without newline).
std::string format_access_text(const access_record& r);
/// Renders an access record as one JSON object (without newline).
std::string format_access_json(const access_record& r);

/// Writes an access line at info level in the configured format.
void access(const access_record& r);

/// Formats a time as RFC 3339 UTC with milliseconds, e.g. "2026-11-26T08:00:00.123Z".
std::string format_time(std::chrono::system_clock::time_point t);

} // namespace portico::log

/// Logs an event when `lvl` passes the threshold; the fields are not evaluated otherwise.
#define PORTICO_LOG(lvl, event, ...)                                                           \
    do {                                                                                       \
        if (::portico::log::enabled(lvl)) {                                                    \
            ::portico::log::write(lvl, event, {__VA_ARGS__});                                  \
        }                                                                                      \
    } while (false)
