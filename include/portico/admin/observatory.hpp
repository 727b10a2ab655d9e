#pragma once

// What the admin pages and /metrics report: per-worker request statistics, backend health,
// reload outcomes. Workers write only their own `worker_stats`; the admin side reads them
// all. The lock in `worker_stats` is taken once per finished request by its own worker and
// only contended while an admin page is being rendered.

#include "portico/core/log.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace portico::admin {

/// What is known of a backend: `up`, `down`, or `exposed` (up, and also listening on a
/// non-loopback address, so reachable from the network).
enum class backend_state { unknown, up, down, exposed };

/// "up", "down", "exposed"; "down" before the first probe.
std::string_view to_string(backend_state s) noexcept;

/// One finished request, owning its text (for the recent-requests list).
struct request_sample {
    std::chrono::system_clock::time_point time;
    std::string client;
    std::string host;
    std::string method;
    std::string target;
    std::string proto;
    unsigned status = 0;
    std::uint64_t bytes = 0;
    double duration_ms = 0;
    std::string route;
    std::string backend;
};

/// Upper bounds, in seconds, of the request duration histogram's buckets (+Inf implied).
inline constexpr std::array<double, 12> duration_buckets{
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0};

/// Counters of one route (by name: "host" or "host/path").
struct route_counters {
    std::map<unsigned, std::uint64_t> by_status; ///< status code -> requests
    std::map<std::string, std::uint64_t, std::less<>> upstream_errors; ///< error name -> count

    std::uint64_t requests() const noexcept;
    /// Requests answered 5xx, or by portico with an error page.
    std::uint64_t errors = 0;
    /// Of those, the admin pages' own (the dashboard polling itself), counted apart so that
    /// the totals leave them out even after `admin` names another host.
    std::uint64_t admin_requests = 0;
    std::uint64_t admin_errors = 0;
};

/// Hashes strings and string views alike, so lookups by view need no temporary string.
struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept
    {
        return std::hash<std::string_view>{}(s);
    }
};

/// Everything the request path of one worker records.
struct stats_totals {
    /// Key: route name ("" for requests no route served).
    std::unordered_map<std::string, route_counters, string_hash, std::equal_to<>> routes;
    std::array<std::uint64_t, duration_buckets.size() + 1> duration_counts{};
    double duration_sum = 0;
    std::uint64_t duration_count = 0;
    std::uint64_t bytes_in = 0;  ///< request body bytes received from clients
    std::uint64_t bytes_out = 0; ///< response body bytes sent to clients

    /// Adds `other` into this.
    void merge(const stats_totals& other);
};

/// The statistics one worker writes.
class worker_stats {
public:
    /// Number of recent requests kept per worker (and shown in total).
    static constexpr std::size_t recent_capacity = 100;
    /// The most bytes of a request's target or Host a recent request keeps (the access log
    /// has them whole): heads of up to `limits.header_bytes` would otherwise make the list,
    /// and each `/api/requests` answer built from it, megabytes.
    static constexpr std::size_t recent_text_limit = 1024;

    /**
     * Records a finished request. `portico_error` names the condition when portico answered
     * with an error page (e.g. "upstream_refused"); `bytes_in` counts request body bytes.
     * `listed` puts it in the recent-requests list; the admin pages' own requests are not
     * listed, and are counted apart (`route_counters::admin_requests`).
     */
    void record(const log::access_record& r, std::string_view portico_error,
                std::uint64_t bytes_in, bool listed = true);

    void connection_opened() noexcept { connections_.fetch_add(1, std::memory_order_relaxed); }
    void connection_closed() noexcept { connections_.fetch_sub(1, std::memory_order_relaxed); }
    void tunnel_opened() noexcept { tunnels_.fetch_add(1, std::memory_order_relaxed); }
    void tunnel_closed() noexcept { tunnels_.fetch_sub(1, std::memory_order_relaxed); }

    std::int64_t connections() const noexcept { return connections_.load(std::memory_order_relaxed); }
    std::int64_t tunnels() const noexcept { return tunnels_.load(std::memory_order_relaxed); }

    /// A copy of the counters.
    stats_totals totals() const;
    /// The recent requests, oldest first.
    std::vector<request_sample> recent() const;

private:
    mutable std::mutex mutex_;
    stats_totals totals_;
    route_counters* last_route_ = nullptr; ///< the counters `last_route_name_` found
    std::string last_route_name_;
    /// A ring of the last `recent_capacity` requests; its strings keep their capacity, so a
    /// busy worker records without allocating.
    std::vector<request_sample> ring_;
    std::size_t ring_next_ = 0;
    std::size_t ring_size_ = 0;
    std::atomic<std::int64_t> connections_{0};
    std::atomic<std::int64_t> tunnels_{0};
};

/// The last reload attempt and the running totals.
struct reload_status {
    std::uint64_t succeeded = 0;
    std::uint64_t failed = 0;
    std::optional<std::chrono::system_clock::time_point> last_time;
    std::string last_error; ///< every diagnostic of the last failed reload, one per line; "" after a success
};

/**
 * The process-wide view the admin host serves: every worker's statistics, the backends'
 * health, reload outcomes and the certificate count. Thread-safe.
 */
class observatory {
public:
    observatory();
    ~observatory();
    observatory(const observatory&) = delete;
    observatory& operator=(const observatory&) = delete;

    /// Adds the statistics of one more worker (before the workers start).
    worker_stats& add_worker();

    /// Sums of every worker's counters.
    stats_totals totals() const;
    /// The most recent requests of all workers, newest first, at most `limit`.
    std::vector<request_sample> recent(std::size_t limit = worker_stats::recent_capacity) const;
    /// Open client connections and tunnels, summed over workers.
    std::int64_t active_connections() const;
    std::int64_t active_tunnels() const;

    /// Records what a probe or a request saw of a backend (keyed by its `to` text).
    void observe_backend(const std::string& to, backend_state state);
    /// The last state seen of a backend; `unknown` when never seen.
    backend_state backend(const std::string& to) const;
    /// Every backend state seen.
    std::map<std::string, backend_state> backends() const;

    /// Records the outcome of a reload; `error` is empty on success.
    void record_reload(bool ok, std::string error);
    reload_status reloads() const;

    /// Where the count of issued certificates comes from (the current certificate manager).
    void set_certificate_counter(std::function<std::uint64_t()> counter);
    /// Certificates issued since start (over every certificate manager used).
    std::uint64_t certificates_issued() const;

    /// Time the observatory was created (process start).
    std::chrono::system_clock::time_point started() const noexcept { return started_; }

private:
    mutable std::mutex mutex_;
    std::vector<std::unique_ptr<worker_stats>> workers_;
    std::map<std::string, backend_state> backends_;
    reload_status reloads_;
    std::function<std::uint64_t()> certificate_counter_;
    std::uint64_t retired_certificates_ = 0; ///< issued by managers replaced on reload
    std::chrono::system_clock::time_point started_;
};

} // namespace portico::admin
