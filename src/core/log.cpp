#include "portico/core/log.hpp"

#include "portico/core/utf8.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <fmt/format.h>

#include <limits.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <thread>
#include <utility>

namespace portico::log {

namespace detail {
level threshold = level::info;
} // namespace detail

namespace {

format encoding = format::text;

std::string_view level_name(level lv) noexcept
{
    switch (lv) {
    case level::debug: return "debug";
    case level::info: return "info";
    case level::warn: return "warn";
    case level::error: return "error";
    case level::off: return "off";
    }
    return "info";
}

void append_json_string(std::string& out, std::string_view s)
{
    // Boost.JSON writes the bytes it is given; a client's target or Host may be any bytes.
    if (!utf8::is_valid(s)) {
        std::string valid;
        utf8::append_valid(valid, s);
        out += boost::json::serialize(boost::json::string_view(valid));
        return;
    }
    out += boost::json::serialize(boost::json::string_view(s.data(), s.size()));
}

bool needs_quotes(std::string_view s) noexcept
{
    if (s.empty()) {
        return true;
    }
    for (char c : s) {
        if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
            return true;
        }
    }
    return false;
}

void append_text_value(std::string& out, const field::value_type& v)
{
    if (const auto* s = std::get_if<std::string_view>(&v)) {
        if (needs_quotes(*s)) {
            append_json_string(out, *s); // JSON escaping keeps one event on one line
        } else {
            out += *s;
        }
    } else if (const auto* i = std::get_if<std::int64_t>(&v)) {
        fmt::format_to(std::back_inserter(out), "{}", *i);
    } else if (const auto* u = std::get_if<std::uint64_t>(&v)) {
        fmt::format_to(std::back_inserter(out), "{}", *u);
    } else if (const auto* d = std::get_if<double>(&v)) {
        fmt::format_to(std::back_inserter(out), "{}", *d);
    } else {
        out += std::get<bool>(v) ? "true" : "false";
    }
}

void append_json_value(std::string& out, const field::value_type& v)
{
    if (const auto* s = std::get_if<std::string_view>(&v)) {
        append_json_string(out, *s);
    } else {
        append_text_value(out, v);
    }
}

void append_json_fields(std::string& out, std::initializer_list<field> fields)
{
    for (const auto& f : fields) {
        out += ',';
        append_json_string(out, f.key);
        out += ':';
        append_json_value(out, f.value);
    }
}

/// Writes all of `bytes` to stderr, waiting as long as it takes; false if stderr is gone.
bool write_stderr(std::string_view bytes)
{
    while (!bytes.empty()) {
        const auto n = ::write(STDERR_FILENO, bytes.data(), bytes.size());
        if (n >= 0) {
            bytes.remove_prefix(static_cast<std::size_t>(n));
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            pollfd writable{.fd = STDERR_FILENO, .events = POLLOUT, .revents = 0};
            ::poll(&writable, 1, -1);
        } else if (errno != EINTR) {
            return false;
        }
    }
    return true;
}

/**
 * Writes whole lines (`lines` ends in a newline) in writes of at most PIPE_BUF bytes where
 * the lines allow: a pipe keeps such a write whole, so lines stay whole when other
 * processes write the same pipe (`(portico run & npm run dev) 2>&1 | tee log`).
 */
bool write_lines(std::string_view lines)
{
    while (!lines.empty()) {
        auto end = lines.substr(0, PIPE_BUF).rfind('\n');
        if (end == std::string_view::npos) {
            end = lines.find('\n'); // a line longer than PIPE_BUF goes out alone
        }
        const auto piece = lines.substr(0, end == std::string_view::npos ? lines.size() : end + 1);
        if (!write_stderr(piece)) {
            return false;
        }
        lines.remove_prefix(piece.size());
    }
    return true;
}

std::string event_line(level lv, std::string_view event, std::initializer_list<field> fields);

/**
 * The thread that writes stderr while `portico run` serves (`background_writer`). Workers
 * queue their lines and go on: a pipe nobody reads (a paused `| less`) or a terminal
 * stopped with Ctrl-S blocks only this thread, never a request. The queue is bounded; lines
 * that do not fit are counted and the count written once stderr moves again.
 */
class stderr_queue {
public:
    /// Queues `line` (ending in a newline); false when no writer thread runs.
    bool push(std::string_view line)
    {
        if (!running_.load(std::memory_order_acquire)) {
            return false;
        }
        std::unique_lock lock(mutex_);
        if (!running_.load(std::memory_order_relaxed)) {
            return false;
        }
        if (pending_.size() + line.size() > capacity) {
            ++dropped_; // an idle writer is woken to say so (a single line over capacity)
        } else {
            pending_ += line;
        }
        if (idle_) {
            idle_ = false;
            lock.unlock();
            wake_.notify_one();
        }
        return true;
    }

    void start()
    {
        const std::lock_guard lock(mutex_);
        stopping_ = false;
        finished_ = false;
        idle_ = false;
        thread_ = std::thread([this] { write_loop(); });
        running_.store(true, std::memory_order_release);
    }

    /// Writes what is queued, waiting at most `limit` for stderr to take it, and ends the
    /// thread; lines from then on are written directly. A stderr that takes nothing (the
    /// reader is gone or stopped) does not keep the process from exiting: the thread,
    /// blocked in its write, is left to end with the process.
    void stop(std::chrono::milliseconds limit)
    {
        std::unique_lock lock(mutex_);
        if (!running_.load(std::memory_order_relaxed)) {
            return;
        }
        stopping_ = true;
        wake_.notify_one();
        const bool drained = drained_.wait_for(lock, limit, [this] { return finished_; });
        running_.store(false, std::memory_order_release);
        lock.unlock();
        if (drained) {
            thread_.join();
        } else {
            thread_.detach();
        }
    }

private:
    /// Queued bytes beyond which lines are dropped: several seconds of access log at any
    /// rate a development machine sees, and a bound on what a stalled reader costs.
    static constexpr std::size_t capacity = 1024 * 1024;

    void write_loop()
    {
        std::string batch;
        std::unique_lock lock(mutex_);
        for (;;) {
            idle_ = pending_.empty() && dropped_ == 0;
            wake_.wait(lock, [this] { return !idle_ || stopping_; });
            if (pending_.empty() && dropped_ == 0) {
                break; // stopping, and nothing left
            }
            batch.swap(pending_);
            const auto dropped = std::exchange(dropped_, 0);
            lock.unlock();
            if (dropped > 0 && enabled(level::warn)) {
                batch +=
                    event_line(level::warn, "log_lines_dropped",
                               {{"count", dropped}, {"reason", "stderr was not read for a while"}});
                batch += '\n';
            }
            const bool written = write_lines(batch);
            batch.clear();
            if (batch.capacity() > 64 * 1024) {
                batch.shrink_to_fit(); // a burst's buffer is not kept for good
            }
            lock.lock();
            if (!written) {
                pending_.clear(); // stderr is closed: nothing queued can be written
            }
        }
        finished_ = true;
        lock.unlock();
        drained_.notify_all();
    }

    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable drained_;
    std::string pending_;
    std::uint64_t dropped_ = 0;
    bool idle_ = false; ///< the thread waits for lines: the next one wakes it
    bool stopping_ = false;
    bool finished_ = false;
    std::atomic<bool> running_{false};
    std::thread thread_;
};

/// Never destroyed: a detached writer blocked on stderr may outlive `main`.
stderr_queue& queue()
{
    static auto* const q = new stderr_queue;
    return *q;
}

void emit_line(std::string& line)
{
    line += '\n';
    if (!queue().push(line)) {
        // One write per line: a single write keeps lines from different threads whole.
        write_stderr(line);
    }
}

} // namespace

background_writer::background_writer()
{
    queue().start();
}

background_writer::~background_writer()
{
    queue().stop(std::chrono::seconds(2));
}

void write_line(std::string_view text)
{
    std::string line(text);
    emit_line(line);
}

std::optional<level> parse_level(std::string_view text) noexcept
{
    if (text == "debug") {
        return level::debug;
    }
    if (text == "info") {
        return level::info;
    }
    if (text == "warn") {
        return level::warn;
    }
    if (text == "error") {
        return level::error;
    }
    return std::nullopt;
}

std::optional<format> parse_format(std::string_view text) noexcept
{
    if (text == "text") {
        return format::text;
    }
    if (text == "json") {
        return format::json;
    }
    return std::nullopt;
}

void configure(level threshold, format enc) noexcept
{
    detail::threshold = threshold;
    encoding = enc;
}

format current_format() noexcept { return encoding; }

std::string format_time(std::chrono::system_clock::time_point t)
{
    const auto since_epoch = t.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - secs);
    const std::time_t tt = static_cast<std::time_t>(secs.count());
    std::tm tm{};
    gmtime_r(&tt, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                       static_cast<int>(millis.count()));
}

void write(level lv, std::string_view event, std::initializer_list<field> fields)
{
    if (!enabled(lv)) {
        return;
    }
    auto line = event_line(lv, event, fields);
    emit_line(line);
}

namespace {

std::string event_line(level lv, std::string_view event, std::initializer_list<field> fields)
{
    std::string line;
    line.reserve(128);
    const auto now = format_time(std::chrono::system_clock::now());
    if (encoding == format::json) {
        line += "{\"time\":";
        append_json_string(line, now);
        line += ",\"level\":";
        append_json_string(line, level_name(lv));
        line += ",\"event\":";
        append_json_string(line, event);
        append_json_fields(line, fields);
        line += '}';
    } else {
        fmt::format_to(std::back_inserter(line), "{} {} {}", now, level_name(lv), event);
        for (const auto& f : fields) {
            line += ' ';
            line += f.key;
            line += '=';
            append_text_value(line, f.value);
        }
    }
    return line;
}

} // namespace

void notice(std::string_view event, std::string_view message, std::initializer_list<field> fields)
{
    if (enabled(level::info)) {
        announce(event, message, fields);
    }
}

void announce(std::string_view event, std::string_view message,
              std::initializer_list<field> fields)
{
    std::string line;
    if (encoding == format::json) {
        line += "{\"time\":";
        append_json_string(line, format_time(std::chrono::system_clock::now()));
        line += ",\"level\":\"info\",\"event\":";
        append_json_string(line, event);
        append_json_fields(line, fields);
        line += '}';
    } else {
        line = message;
    }
    emit_line(line);
}

namespace {

/**
 * A field the client chose (Host may hold blanks, quotes and non-ASCII bytes) as one token
 * of the text line: every byte outside printable ASCII, blank, '"' and '\\' becomes \xHH,
 * so the line's columns cannot be forged. "-" when empty.
 */
std::string client_token(std::string_view v)
{
    if (v.empty()) {
        return "-";
    }
    std::string out;
    out.reserve(v.size());
    for (const char c : v) {
        const auto b = static_cast<unsigned char>(c);
        if (b <= 0x20 || b >= 0x7f || c == '"' || c == '\\') {
            fmt::format_to(std::back_inserter(out), "\\x{:02X}", b);
        } else {
            out += c;
        }
    }
    return out;
}

} // namespace

std::string format_access_text(const access_record& r)
{
    const auto or_dash = [](std::string_view v) { return v.empty() ? std::string_view("-") : v; };
    return fmt::format("{} {} {} \"{} {} {}\" {} {} {:.1f}ms -> {}", format_time(r.time),
                       r.client, client_token(r.host), client_token(r.method),
                       client_token(r.target), r.proto, r.status, r.bytes, r.duration_ms,
                       or_dash(r.backend));
}

std::string format_access_json(const access_record& r)
{
    std::string out = "{\"time\":";
    append_json_string(out, format_time(r.time));
    out += ",\"client\":";
    append_json_string(out, r.client);
    out += ",\"host\":";
    append_json_string(out, r.host);
    out += ",\"method\":";
    append_json_string(out, r.method);
    out += ",\"target\":";
    append_json_string(out, r.target);
    out += ",\"proto\":";
    append_json_string(out, r.proto);
    fmt::format_to(std::back_inserter(out), ",\"status\":{},\"bytes\":{},\"duration_ms\":{:.3f}",
                   r.status, r.bytes, r.duration_ms);
    out += ",\"route\":";
    if (r.route.empty()) {
        out += "null";
    } else {
        append_json_string(out, r.route);
    }
    out += ",\"backend\":";
    if (r.backend.empty()) {
        out += "null";
    } else {
        append_json_string(out, r.backend);
    }
    out += '}';
    return out;
}

void access(const access_record& r)
{
    if (!enabled(level::info)) {
        return;
    }
    std::string line = encoding == format::json ? format_access_json(r) : format_access_text(r);
    emit_line(line);
}

} // namespace portico::log
