#pragma once

#include "proxy/mailbox.hpp"
#include "proxy/streams.hpp"

#include "portico/config/config.hpp"
#include "portico/core/error.hpp"
#include "portico/tls/certificates.hpp"

#include <boost/asio/ssl/stream.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace portico {
class name_resolver;
}

namespace portico::proxy {

/// One connection to a backend, with the bytes read from it but not yet parsed.
struct upstream_connection {
    /// The first read of a response head, and what `buffer` keeps while the connection is
    /// pooled: enough for most heads with a small body.
    static constexpr std::size_t first_read_size = 1024;

    explicit upstream_connection(const executor& ex) : stream(ex) {}

    upstream_stream stream;
    std::unique_ptr<ssl::stream<upstream_stream&>> tls; ///< set for https backends
    beast::flat_buffer buffer;
    std::string address; ///< the address connected to, e.g. "127.0.0.1:5173"
    bool reused = false; ///< taken from the pool rather than freshly connected
    std::chrono::steady_clock::time_point idle_since{};
};

/// The outcome of `upstream_pool::connect`.
struct acquire_result {
    bool cancelled = false; ///< cut short through `in_flight` (see `upstream_pool::connect`)
    std::unique_ptr<upstream_connection> connection; ///< null on failure
    errc error = errc::upstream_refused;             ///< why, when `connection` is null
    std::vector<std::string> tried;                  ///< addresses tried, for the 502 page
    std::string detail;                              ///< the system's words for the failure
    bool unresolved = false; ///< the backend's host name did not resolve (`upstream_refused`)
    /// The https backend's certificate did not verify (`upstream_tls`), as opposed to a
    /// handshake that failed otherwise (a backend that does not speak TLS).
    bool certificate_rejected = false;
    /// The TCP connection was made (a TLS handshake failed or timed out after it).
    bool reached = false;
    /// No socket could be made: portico has no file descriptor left (`upstream_refused`,
    /// which says nothing about the backend).
    bool out_of_descriptors = false;
};

/**
 * Keep-alive connections to backends, owned by one worker (no locking: only that worker's
 * thread touches it). A connection is reused only while the backend has not closed it and
 * it has been idle for less than `timeouts.idle`.
 */
class upstream_pool {
public:
    /// A pool whose connections run on `ex`; names of remote backends are resolved on
    /// other threads, whose answers come back through `inbox`.
    upstream_pool(executor ex, mailbox& inbox, const config::timeouts& timeouts);
    ~upstream_pool();

    /**
     * A pooled connection to `b` that the backend has neither closed nor sent anything on
     * since its last response, or null. A backend can still close it between this check and
     * the request; a replayable request is then retried on a fresh connection (see
     * `exchange`).
     */
    std::unique_ptr<upstream_connection> take_idle(const config::backend& b,
                                                   bool skip_verify = false);

    /// Connects a new connection to `b` within `timeouts.connect` (TLS handshake included for
    /// https backends, verified unless `skip_verify`), bypassing the pool. While it connects,
    /// `*in_flight` (when given) points at the stream, so that a client that leaves meanwhile
    /// (or the shutdown deadline) can have it cancelled, which ends the attempt at once.
    task<acquire_result> connect(const config::backend& b, bool skip_verify = false,
                                 upstream_stream** in_flight = nullptr);

    /// The client TLS contexts for https backends (set before the first https exchange).
    void set_certificates(tls::certificate_manager& c) noexcept { certificates_ = &c; }

    /// Returns a connection whose last exchange completed cleanly, for reuse.
    void release(const config::backend& b, std::unique_ptr<upstream_connection> c,
                 bool skip_verify = false);

    /// Applies the timeouts of a reloaded configuration to new connections and reuse.
    void set_timeouts(const config::timeouts& t) { timeouts_ = t; }

    /// Closes every idle connection (shutdown).
    void clear();

    /// How often idle connections are looked at while there are any (see `sweep`).
    static constexpr std::chrono::milliseconds sweep_interval{1000};

    /// Ends every wait for a backend's name with `operation_aborted` (the shutdown deadline).
    void cancel_resolves();

private:
    task<acquire_result> connect_socket(const config::backend& b, upstream_stream** in_flight);
    task<acquire_result> connect_tcp(const config::backend& b, upstream_stream** in_flight);
    task<void> start_tls(acquire_result& r, const config::backend& b, bool skip_verify,
                         upstream_stream** in_flight);
    const std::string& key_of(const config::backend& b, bool skip_verify = false);
    std::vector<std::unique_ptr<upstream_connection>>& idle_list(const config::backend& b,
                                                                 bool skip_verify);
    void schedule_sweep();
    void sweep();

    tls::certificate_manager* certificates_ = nullptr;

    executor executor_;
    mailbox& inbox_;
    std::unique_ptr<name_resolver> resolver_; ///< started for the first backend named by host
    config::timeouts timeouts_;
    std::unordered_map<std::string, std::vector<std::unique_ptr<upstream_connection>>> idle_;
    /// For `localhost` backends: the address family that answered last, tried first.
    std::unordered_map<std::string, bool> localhost_prefers_v6_;
    std::string key_scratch_;
    /// Closes idle connections that outlived `timeouts.idle` or that their backend closed,
    /// armed while any connection is pooled: a dev server restarting waits for its open
    /// connections, and one it closed would stay in CLOSE-WAIT here.
    steady_timer sweep_timer_;
    bool sweep_armed_ = false;
    /// Tells a wait `clear` cancelled from the one armed after it.
    std::uint64_t sweep_generation_ = 0;

    /// The backend of the last idle-list lookup and the list it found.
    struct lookup {
        config::backend_scheme scheme = config::backend_scheme::http;
        std::uint16_t port = 0;
        bool skip_verify = false;
        std::string host;
        std::filesystem::path socket_path;
        std::vector<std::unique_ptr<upstream_connection>>* list = nullptr;
    };
    lookup last_lookup_;
};

} // namespace portico::proxy
