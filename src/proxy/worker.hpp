#pragma once

#include "proxy/streams.hpp"
#include "proxy/upstream_pool.hpp"

#include "portico/config/config.hpp"
#include "portico/routing/route_table.hpp"
#include "portico/tls/certificates.hpp"

#include <cstdint>
#include <list>
#include <memory>
#include <vector>

namespace portico::proxy {

/// The configuration a worker serves, with its route table; never changes once built.
struct serving_state {
    explicit serving_state(config::config c) : cfg(std::move(c)), table(cfg) {}

    config::config cfg;
    routing::route_table table;
};

/// A live client connection as the worker's registry sees it.
struct connection_entry {
    tcp_stream* stream = nullptr;
    upstream_stream* upstream = nullptr; ///< the backend connection of the exchange in flight
    bool idle = true; ///< between requests: may be closed at once on shutdown
};

/**
 * One thread's share of the proxy: its `io_context`, acceptors, upstream pool and live
 * connections. Everything here is touched only from the worker's own thread, so nothing on
 * the request path is locked or shared with another worker.
 */
class worker {
public:
    worker(unsigned index, std::shared_ptr<const serving_state> state);

    /// The worker's event loop.
    net::io_context& context() noexcept { return context_; }
    /// The worker's executor with portico's default completion token.
    executor get_executor() noexcept { return executor(context_.get_executor()); }

    /// The configuration and routes new requests use.
    const std::shared_ptr<const serving_state>& state() const noexcept { return state_; }

    /// Certificates for TLS listeners (shared by all workers; thread-safe).
    tls::certificate_manager& certificates() noexcept { return *certificates_; }

    /// The port plain-HTTP requests are redirected to for https ("" = their own port).
    const std::string& https_port() const noexcept { return https_port_; }

    /// The pool of backend connections.
    upstream_pool& pool() noexcept { return pool_; }

    /// Adds an acceptor bound by the server; accepting starts with `start()`.
    void add_acceptor(tcp_acceptor acceptor, config::tls_mode mode);

    /// Sets the certificates TLS listeners use (after binding, before `start()`).
    void set_certificates(tls::certificate_manager& c) noexcept
    {
        certificates_ = &c;
        pool_.set_certificates(c);
    }

    /// Sets where plain-HTTP requests of `redirect_https` routes go (after binding).
    void set_https_port(std::string port) { https_port_ = std::move(port); }

    /// Starts accepting on every acceptor.
    void start();

    /// Stops accepting, closes idle connections, and closes the rest after the grace period.
    void begin_shutdown();

    /// True once shutdown began: finished exchanges close their connection.
    bool is_draining() const noexcept { return draining_; }

    /// Registers a connection; the returned iterator unregisters it.
    std::list<connection_entry>::iterator register_connection(tcp_stream& stream);
    /// Unregisters a connection; ends the shutdown wait when it was the last one.
    void unregister_connection(std::list<connection_entry>::iterator it);

    /// The worker's number, for logs.
    unsigned index() const noexcept { return index_; }

private:
    struct listening {
        tcp_acceptor acceptor;
        config::tls_mode mode;
    };

    task<void> accept_loop(listening& l);
    task<void> shutdown_deadline();

    unsigned index_;
    net::io_context context_{1};
    std::shared_ptr<const serving_state> state_;
    upstream_pool pool_;
    tls::certificate_manager* certificates_ = nullptr;
    std::string https_port_;
    std::list<listening> acceptors_;
    std::list<connection_entry> connections_;
    std::uint64_t next_connection_id_ = 1;
    bool draining_ = false;
    steady_timer shutdown_timer_;
};

/// Serves one accepted client connection until it closes.
task<void> serve_connection(worker& w, tcp_socket socket, std::uint64_t id, config::tls_mode mode);

} // namespace portico::proxy
