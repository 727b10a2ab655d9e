#pragma once

// The data plane: listeners, workers and the forwarding engine behind them.

#include "portico/admin/observatory.hpp"
#include "portico/config/config.hpp"
#include "portico/core/net.hpp"

#include <boost/system/error_code.hpp>

#include <memory>
#include <string>
#include <vector>

namespace portico::proxy {

/// Outcome of binding the listeners.
struct bind_result {
    boost::system::error_code error; ///< set when a listener could not be bound
    std::string message;             ///< what failed and what to do about it
};

/// Outcome of applying a new configuration to a running server.
struct reload_result {
    bool ok = false;
    std::string message;            ///< why it failed (the old configuration still serves)
    std::vector<std::string> notes; ///< what was applied differently, e.g. `workers` kept
};

/**
 * Owns the worker threads (one `io_context` each, with its own acceptor on every listener
 * address via `SO_REUSEPORT`) and serves the routes of one configuration.
 *
 * Life cycle: construct, `bind()`, then `run()` on one thread; `stop()` from any thread
 * starts a graceful shutdown after which `run()` returns.
 */
class server {
public:
    /// Prepares a server for `cfg`; nothing is bound yet.
    explicit server(config::config cfg);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    /// Binds every listener on every worker. On failure nothing stays bound.
    bind_result bind();

    /**
     * Runs the workers until a graceful shutdown completes. When `handle_signals` is set,
     * SIGINT and SIGTERM start that shutdown, and another one ends its grace period.
     */
    void run(bool handle_signals = false);

    /// Starts a graceful shutdown; thread-safe and idempotent.
    void stop();

    /// Ends a shutdown's grace period (starting the shutdown if need be): what is still
    /// open is closed now, as at `timeouts.shutdown`. Any thread.
    void stop_now();

    /// Whether a shutdown has begun. Any thread.
    bool is_stopping() const;

    /**
     * Serves `next` from now on (thread-safe; call after `bind()`). New listeners are bound
     * before removed ones close; requests in flight and open tunnels finish on the routes
     * they started with. On failure (a listener cannot be bound, the CA cannot be opened)
     * nothing changes. `workers` is applied at the next start only.
     */
    reload_result reload(config::config next);

    /// Statistics, backend health and reload outcomes, for the admin pages.
    admin::observatory& observatory() noexcept;

    /// The backends of the configuration being served (for the health probe; thread-safe).
    std::vector<config::backend> backends() const;

    /// The bound addresses, one per listener address (after `bind()`).
    std::vector<tcp::endpoint> endpoints() const;

    /// The number of worker threads this server runs.
    unsigned worker_count() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace portico::proxy
