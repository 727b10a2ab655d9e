#pragma once

#include "proxy/heap_trimmer.hpp"
#include "proxy/mailbox.hpp"
#include "proxy/parking_lot.hpp"
#include "proxy/send_batch.hpp"
#include "proxy/streams.hpp"
#include "proxy/upstream_pool.hpp"

#include "portico/admin/observatory.hpp"
#include "portico/config/config.hpp"
#include "portico/http/response_head.hpp"
#include "portico/routing/route_table.hpp"
#include "portico/tls/certificates.hpp"

#include <boost/intrusive/list.hpp>

#include <cstdint>
#include <exception>
#include <list>
#include <memory>
#include <span>
#include <vector>

namespace portico::proxy {

/**
 * The configuration a worker serves, with its route table; never changes once built. A
 * reload builds a new one; each request holds the one it started with until it ends, so
 * routes it points into stay valid.
 */
struct serving_state {
    explicit serving_state(config::config c)
        : cfg(std::move(c)), table(std::move(cfg.routes), cfg.admin)
    {
    }

    /// The configuration, but for its routes: the table took them over (one copy of a
    /// thousand routes fewer at each start and reload); they are `table.routes()`.
    config::config cfg;
    routing::route_table table;
    std::vector<std::uint16_t> listener_ports; ///< bound ports, for the admin Origin check
    std::vector<std::string> listen_addresses; ///< bound addresses, for the dashboard
    std::string https_port; ///< the first `tls: only` listener's port, "" when none
    std::string auto_port;  ///< the first `tls: auto` listener's port, "" when none

    /**
     * Where a plain request that arrived on `local_port` should go for https: a `tls: only`
     * listener, else its own listener unless that is `tls: off`, else a `tls: auto` one; ""
     * when no listener serves TLS.
     */
    std::string_view https_port_from(std::string_view local_port, bool listener_serves_tls) const
    {
        if (!https_port.empty()) {
            return https_port;
        }
        return listener_serves_tls ? local_port : std::string_view(auto_port);
    }
};

/// A live client connection as the worker's registry sees it. It lives inside the connection,
/// so registering one allocates nothing.
struct connection_entry : boost::intrusive::list_base_hook<> {
    explicit connection_entry(tcp_stream& s) noexcept : stream(&s) {}

    tcp_stream* stream = nullptr;
    upstream_stream* upstream = nullptr; ///< the backend connection of the exchange in flight
    bool idle = true; ///< between requests: may be closed at once on shutdown
    bool tunnel = false; ///< relays bytes both ways: a half-close there is the protocol's
    /// The client closed its side while its request waited on the backend, which was then
    /// let go (see `worker::watch_for_abandoned`).
    bool client_gone = false;
};

/**
 * One thread's share of the proxy: its `io_context`, acceptors, upstream pool and live
 * connections. Everything here is touched only from the worker's own thread, so nothing on
 * the request path is locked or shared with another worker.
 */
class worker {
public:
    worker(unsigned index, std::shared_ptr<const serving_state> state, admin::worker_stats& stats,
           admin::observatory& observatory);

    /// The worker's event loop. Only the worker's thread may post to it: other threads hand
    /// work over through `inbox()`.
    net::io_context& context() noexcept { return context_; }

    /// Where other threads leave work for this worker's thread.
    mailbox& inbox() noexcept { return inbox_; }
    /// The worker's executor with portico's default completion token.
    executor get_executor() noexcept { return executor(context_.get_executor()); }

    /// The configuration and routes new requests use.
    const std::shared_ptr<const serving_state>& state() const noexcept { return state_; }

    /// Replaces the configuration new requests use (a reload); requests in flight keep theirs.
    void set_state(std::shared_ptr<const serving_state> next);

    /// Certificates for TLS listeners (shared by all workers; thread-safe). A connection
    /// keeps the manager it started with.
    const std::shared_ptr<tls::certificate_manager>& certificates() const noexcept
    {
        return certificates_;
    }

    /// This worker's request statistics.
    admin::worker_stats& stats() noexcept { return stats_; }
    /// Every worker's statistics, for the admin pages.
    admin::observatory& observatory() noexcept { return observatory_; }

    /// The pool of backend connections.
    upstream_pool& pool() noexcept { return pool_; }

    /// Where plain connections wait for their second request (decision 0021).
    parking_lot& parking() noexcept { return parking_; }

    /// Where request heads for backends and keep-alive responses are gathered and sent
    /// together once per turn of the loop (decision 0020).
    send_batch& sends() noexcept { return sends_; }

    /**
     * Adds an acceptor bound by the server (on a context of its own) for the listener named
     * `key`, moving it onto this worker's context; accepting starts with `start()`, or at
     * once when the worker already runs. On the worker's thread, or before it runs.
     */
    void add_acceptor(tcp_acceptor acceptor, config::tls_mode mode, std::string key);

    /// Closes the acceptors of a listener that a reload removed; open connections stay.
    void remove_acceptors(const std::string& key);

    /// Moves the acceptors of listener `from_key` on `local` to listener `to_key` (a reload
    /// that writes the same address another way keeps its sockets).
    void rename_acceptors(const std::string& from_key, const tcp::endpoint& local,
                          const std::string& to_key);

    /// Changes how a listener's new connections are treated (a reload changed its `tls`).
    void set_listener_mode(const std::string& key, config::tls_mode mode);

    /// Sets the certificates TLS listeners and https backends use.
    void set_certificates(std::shared_ptr<tls::certificate_manager> c);

    /// Starts accepting on every acceptor.
    void start();

    /**
     * Stops accepting, closes idle connections, and closes the rest after the grace period;
     * once none is left the inbox closes too, and the context runs out of work.
     */
    void begin_shutdown();
    /// Ends a shutdown's grace period now: what is still open is closed (a second signal).
    void end_grace_period();

    /// True once shutdown began: finished exchanges close their connection.
    bool is_draining() const noexcept { return draining_; }

    /// True once `timeouts.shutdown` has passed: connections close without lingering.
    bool is_past_shutdown_deadline() const noexcept { return past_deadline_; }
    /// Connections a shutdown closed at its deadline or at a second signal; whether it was
    /// the signal. Read once the worker has stopped.
    std::size_t closed_at_shutdown() const noexcept { return closed_at_shutdown_; }
    bool shutdown_was_forced() const noexcept { return shutdown_forced_; }

    /// Registers a connection until `unregister_connection`; `resumed` for one that comes
    /// back from the parking lot, which counted it open meanwhile.
    void register_connection(connection_entry& entry, bool resumed = false) noexcept;

    /**
     * Makes sure that, while any exchange has a backend connection, the clients are looked
     * at every second: one that has closed its side (a browser tab closed on a long poll, a
     * curl interrupted) has its backend connection cancelled, as nginx does (499), instead
     * of both being held until the backend answers, which with `timeouts.upstream: 0` may be
     * never. Costs nothing per request beyond this check.
     */
    void watch_for_abandoned()
    {
        if (!abandon_watch_armed_) {
            arm_abandon_watch();
        }
    }
    /// Unregisters a connection; ends the shutdown wait when it was the last one. `parked`
    /// for one the parking lot took, which still counts as open.
    void unregister_connection(connection_entry& entry, bool parked = false) noexcept;

    /// A buffer for the route name of the request being logged (reused, never shrunk).
    std::string& route_name_scratch() noexcept { return route_name_scratch_; }

    /// Where a response head is parsed in place; valid until the next parse on this worker,
    /// so only between two suspensions of one exchange.
    http::simple_response& response_head_scratch() noexcept { return response_head_scratch_; }

    /// Where a new connection's first bytes are read before only they are kept (see
    /// `serve_connection`); valid until the worker's next read into it.
    std::span<char> read_scratch() noexcept { return {read_scratch_.get(), read_scratch_size}; }

    /// The worker's number, for logs.
    unsigned index() const noexcept { return index_; }

private:
    struct listening {
        tcp_acceptor acceptor;
        config::tls_mode mode;
        std::string key;      ///< the listener as configured, e.g. "127.0.0.1:7080"
        tcp::endpoint local;  ///< the bound address, which every connection on it shares
        bool wildcard = false; ///< bound to 0.0.0.0 or ::, so a connection's address varies
        bool removed = false; ///< closed by a reload: the accept loop erases it when it ends
        steady_timer pause;   ///< the accept loop's wait after running out of descriptors
    };

    task<void> accept_loop(std::list<listening>::iterator l);
    /// Serves a connection `accept4` took from `l`.
    void serve_accepted(const listening& l, int fd, const tcp::endpoint& remote);
    /// Serves a parked connection whose next request has begun to arrive.
    void resume_parked(const parked_connection& c);
    /// At most this many queued connections are taken from a listener a reload removes.
    static constexpr std::size_t max_drained_on_removal = 4096;
    task<void> shutdown_deadline();
    /// Closes every connection and backend exchange still open, at the deadline or (when
    /// `forced`) at a second signal, and counts them.
    void close_remaining(bool forced);
    void arm_abandon_watch();
    void look_for_abandoned();

    unsigned index_;
    // One thread runs the context, and no other thread touches it once that thread runs:
    // other threads leave work in the mailbox, and acceptors bound elsewhere are registered
    // here by `add_acceptor`. So every lock Asio would take for it (the scheduler's, the
    // reactor's registration and timer lock, the per-socket ones) guards nothing and is
    // dropped (decision 0013).
    net::io_context context_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE};
    mailbox inbox_{context_};
    send_batch sends_{context_};
    std::shared_ptr<const serving_state> state_;
    admin::worker_stats& stats_;
    admin::observatory& observatory_;
    std::shared_ptr<tls::certificate_manager> certificates_;
    std::list<listening> acceptors_;
    bool started_ = false;
    std::string route_name_scratch_;
    /// As much as a request head is read in at once while it is incomplete.
    static constexpr std::size_t read_scratch_size = 16 * 1024;
    std::unique_ptr<char[]> read_scratch_ =
        std::make_unique_for_overwrite<char[]>(read_scratch_size);
    http::simple_response response_head_scratch_;
    boost::intrusive::list<connection_entry> connections_;
    heap_trimmer trimmer_{context_};
    std::uint64_t next_connection_id_ = 1;
    bool draining_ = false;
    bool past_deadline_ = false;
    std::size_t closed_at_shutdown_ = 0;
    bool shutdown_forced_ = false;
    steady_timer shutdown_timer_;
    steady_timer abandon_timer_;
    bool abandon_watch_armed_ = false;
    parking_lot parking_;
    // Last, so it goes first: a resolve still awaited (only if the loop ended with one
    // pending) unwinds into a worker still whole.
    upstream_pool pool_;
};

/// Completes a connection's coroutine: logs an exception that escaped it.
struct connection_done {
    std::uint64_t id;
    void operator()(std::exception_ptr e) const;
};

/// Serves one accepted client connection, from `remote` to `local`, until it closes.
task<void> serve_connection(worker& w, tcp_stream stream, tcp::endpoint remote,
                            tcp::endpoint local, std::uint64_t id, config::tls_mode mode);

/// Serves a plain connection the parking lot gave back (its second request has begun to
/// arrive) until it closes.
task<void> serve_unparked(worker& w, tcp_stream stream, parked_connection parked);

} // namespace portico::proxy
