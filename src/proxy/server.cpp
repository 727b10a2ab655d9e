#include "portico/proxy/server.hpp"

#include "proxy/worker.hpp"

#include "portico/admin/probe.hpp"
#include "portico/core/log.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

namespace portico::proxy {
namespace {

std::vector<net::ip::address> listen_addresses(const config::listener& l)
{
    if (l.host == "localhost") {
        return {net::ip::make_address("127.0.0.1"), net::ip::make_address("::1")};
    }
    return {net::ip::make_address(l.host)};
}

std::string_view protocols(config::tls_mode mode)
{
    switch (mode) {
    case config::tls_mode::automatic: return "http+https";
    case config::tls_mode::only: return "https";
    case config::tls_mode::off: return "http";
    }
    return "http";
}

/**
 * What identifies each listener across reloads: its address as written, which the
 * configuration allows once, but for port 0 (a fresh port each, for tests), where the
 * second of an address is "127.0.0.1:0#2" and so on, matched in the order of the file.
 */
std::vector<std::string> listener_keys(const std::vector<config::listener>& listen)
{
    std::vector<std::string> keys;
    std::map<std::string, int> seen;
    for (const auto& l : listen) {
        auto key = l.to_string();
        if (const int n = ++seen[key]; n > 1) {
            key += fmt::format("#{}", n);
        }
        keys.push_back(std::move(key));
    }
    return keys;
}

/// One configured listener once bound: its addresses and, per worker, an acceptor for each.
struct bound_listener {
    config::listener cfg;
    std::string key; ///< from `listener_keys`: listeners are matched by it across reloads
    std::vector<tcp::endpoint> endpoints;
    /// Bound on the server's binding context, handed to the workers, then empty.
    std::vector<std::vector<tcp_acceptor>> per_worker;
    /// Endpoints a reload did not bind again: the workers' acceptors of the listener named
    /// here, which the reload drops, serve them under this one's key.
    std::vector<std::pair<std::string, tcp::endpoint>> taken_over;
};

std::string bind_failure(const tcp::endpoint& ep, const boost::system::error_code& ec)
{
    const auto where = endpoint_text(ep);
    if (ec == net::error::address_in_use) {
        return fmt::format("cannot listen on {}: port {} is already in use by another process; "
                           "stop it (see `ss -ltnp 'sport = :{}'`) or change 'listen' in the "
                           "configuration",
                           where, ep.port(), ep.port());
    }
    if (ec == net::error::access_denied) {
        return fmt::format("cannot listen on {}: permission denied (ports below 1024 need root "
                           "or CAP_NET_BIND_SERVICE); choose a port above 1023",
                           where);
    }
    return fmt::format("cannot listen on {}: {}", where, ec.message());
}

/// Whether `l` listens on `ep`.
bool holds(const bound_listener& l, const tcp::endpoint& ep)
{
    return std::find(l.endpoints.begin(), l.endpoints.end(), ep) != l.endpoints.end();
}

/// The listener in `listeners` that listens on `ep`, or nullptr.
const bound_listener* holder_of(const std::vector<bound_listener>& listeners,
                                const tcp::endpoint& ep)
{
    const auto it = std::find_if(listeners.begin(), listeners.end(),
                                 [&ep](const bound_listener& l) { return holds(l, ep); });
    return it == listeners.end() ? nullptr : &*it;
}

/// "portico ready: http+https on 127.0.0.1:7080 (3 routes)", as SPEC words it.
std::string ready_message(std::string_view protocols, std::string_view where, std::size_t routes)
{
    return fmt::format("portico ready: {} on {} ({} route{})", protocols, where, routes,
                       routes == 1 ? "" : "s");
}

/// Same CA, same constraints, same user certificates (by file name).
bool same_tls(const config::tls_settings& a, const config::tls_settings& b)
{
    if (a.ca_dir != b.ca_dir || a.ca_permitted_names != b.ca_permitted_names ||
        a.certificates.size() != b.certificates.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.certificates.size(); ++i) {
        const auto& x = a.certificates[i];
        const auto& y = b.certificates[i];
        if (x.hosts != y.hosts || x.cert != y.cert || x.key != y.key) {
            return false;
        }
    }
    return true;
}

/**
 * SIGINT and SIGTERM, caught on a context and thread of their own while it lives. Not on a
 * worker: Asio handles signals on a context without a scheduler lock only when no other
 * context does, and the reloader's SIGHUP is on its own context (decision 0013).
 */
class signal_watch {
public:
    /// `on_signal` at the first SIGINT or SIGTERM, `on_another` at each one after it (a
    /// second Ctrl-C that will not wait out the shutdown's grace period).
    explicit signal_watch(std::function<void()> on_signal, std::function<void()> on_another)
        : signals_(context_, SIGINT, SIGTERM), on_signal_(std::move(on_signal)),
          on_another_(std::move(on_another))
    {
        wait();
    }

    /// Starts handling the signals caught since construction, and those to come.
    void start()
    {
        thread_ = std::thread([this] { context_.run(); });
    }

    ~signal_watch()
    {
        if (thread_.joinable()) {
            net::post(context_, [this] { signals_.cancel(); });
            thread_.join();
        }
    }

    signal_watch(const signal_watch&) = delete;
    signal_watch& operator=(const signal_watch&) = delete;

private:
    void wait()
    {
        signals_.async_wait([this](const boost::system::error_code& ec, int) {
            if (ec) {
                return;
            }
            (caught_++ == 0 ? on_signal_ : on_another_)();
            wait();
        });
    }

    net::io_context context_{1};
    net::signal_set signals_;
    std::function<void()> on_signal_;
    std::function<void()> on_another_;
    unsigned caught_ = 0;
    std::thread thread_;
};

} // namespace

struct server::impl {
    explicit impl(config::config cfg) : state(std::make_shared<serving_state>(std::move(cfg)))
    {
        worker_count = state->cfg.workers;
        if (worker_count == 0) {
            worker_count = std::max(1U, std::thread::hardware_concurrency());
        }
        for (unsigned i = 0; i < worker_count; ++i) {
            workers.push_back(
                std::make_unique<worker>(i, state, observatory.add_worker(), observatory));
        }
    }

    /**
     * Whether another socket listens on `ep`. SO_REUSEPORT lets any process of the same
     * user bind a port that is listened on with it: a second portico started on the same
     * port would bind and take a share of its connections, with routes of its own. A socket
     * bound without SO_REUSEPORT (SO_REUSEADDR still passes TIME_WAIT leftovers) fails
     * where anything listens, this process's acceptors included.
     */
    boost::system::error_code probe_listened(const tcp::endpoint& ep)
    {
        boost::system::error_code ec;
        net::basic_stream_socket<tcp, net::io_context::executor_type> probe(binding);
        probe.open(ep.protocol(), ec);
        if (!ec) {
            probe.set_option(net::socket_base::reuse_address(true), ec);
        }
        if (!ec && ep.address().is_v6()) {
            probe.set_option(net::ip::v6_only(true), ec);
        }
        if (!ec) {
            probe.bind(ep, ec);
        }
        return ec;
    }

    /// Whether a socket this process holds on `held` would make a bind to `ep` fail without
    /// SO_REUSEPORT: same port and family, and the same address or either one a wildcard.
    static bool overlaps(const tcp::endpoint& held, const tcp::endpoint& ep)
    {
        return held.port() == ep.port() && held.address().is_v6() == ep.address().is_v6() &&
               (held.address() == ep.address() || held.address().is_unspecified() ||
                ep.address().is_unspecified());
    }

    /// Whether this process already listens where `ep` would (a reload that renames a
    /// listener, a wildcard beside a loopback address), counting `earlier`, bound in the
    /// same pass.
    bool listens_on(const tcp::endpoint& ep, const std::vector<bound_listener>& earlier) const
    {
        const auto covers = [&ep](const bound_listener& l) {
            return std::any_of(l.endpoints.begin(), l.endpoints.end(),
                               [&ep](const tcp::endpoint& held) { return overlaps(held, ep); });
        };
        return std::any_of(listeners.begin(), listeners.end(), covers) ||
               std::any_of(earlier.begin(), earlier.end(), covers) ||
               std::any_of(dropped.begin(), dropped.end(), [&ep](const dropped_address& d) {
                   return d.workers_left->load() > 0 && overlaps(d.endpoint, ep);
               });
    }

    /**
     * Binds every address of `l` once per worker (SO_REUSEPORT: the kernel spreads
     * connections and none crosses threads), unless another process listens there. With
     * port 0 the first acceptor picks the port and the others follow it. On failure nothing
     * stays bound.
     */
    std::optional<std::string> bind_listener(bound_listener& out,
                                             const std::vector<bound_listener>& earlier = {},
                                             const std::vector<const bound_listener*>& leaving = {})
    {
        out.per_worker.clear();
        out.per_worker.resize(workers.size());
        for (const auto& address : listen_addresses(out.cfg)) {
            tcp::endpoint ep(address, out.cfg.port);
            // A listener the reload drops already listens there (the same address written
            // another way): its sockets are kept. Closing them for new ones would reset the
            // connections the kernel queued on them meanwhile.
            const auto same = std::find_if(leaving.begin(), leaving.end(),
                                           [&ep](const auto* l) { return holds(*l, ep); });
            if (ep.port() != 0 && same != leaving.end()) {
                out.taken_over.emplace_back((*same)->key, ep);
                out.endpoints.push_back(ep);
                continue;
            }
            if (ep.port() != 0 && !listens_on(ep, earlier)) {
                if (const auto ec = probe_listened(ep)) {
                    out.per_worker.clear();
                    return bind_failure(ep, ec);
                }
            }
            for (std::size_t w = 0; w < workers.size(); ++w) {
                tcp_acceptor acceptor(executor(binding.get_executor()));
                boost::system::error_code ec;
                acceptor.open(ep.protocol(), ec);
                if (!ec) {
                    acceptor.set_option(net::socket_base::reuse_address(true), ec);
                }
                if (!ec) {
                    // Linux copies TCP_NODELAY to every accepted socket: one system call per
                    // listener instead of one per connection.
                    acceptor.set_option(tcp::no_delay(true), ec);
                }
                if (!ec) {
                    const int one = 1;
                    if (::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one,
                                     sizeof(one)) != 0) {
                        ec.assign(errno, boost::system::system_category());
                    }
                }
                if (!ec && ep.address().is_v6()) {
                    acceptor.set_option(net::ip::v6_only(true), ec);
                }
                if (!ec) {
                    acceptor.bind(ep, ec);
                }
                if (!ec) {
                    acceptor.listen(net::socket_base::max_listen_connections, ec);
                }
                if (ec) {
                    out.per_worker.clear();
                    return bind_failure(ep, ec);
                }
                ep = acceptor.local_endpoint();
                out.per_worker[w].push_back(std::move(acceptor));
            }
            out.endpoints.push_back(ep);
        }
        return std::nullopt;
    }

    /// Creates the certificate manager for `s`; its name filter keeps `s` alive.
    std::shared_ptr<tls::certificate_manager>
    make_certificates(const std::shared_ptr<const serving_state>& s, std::string& error)
    {
        return tls::certificate_manager::create(
            s->cfg.tls, [s](std::string_view name) { return s->table.is_served_name(name); },
            error);
    }

    /// The ports and the https targets of `listeners`, recorded in `s`.
    static void describe_listeners(serving_state& s, const std::vector<bound_listener>& listeners)
    {
        s.listener_ports.clear();
        s.listen_addresses.clear();
        s.https_port.clear();
        s.auto_port.clear();
        for (const auto& l : listeners) {
            for (const auto& ep : l.endpoints) {
                s.listener_ports.push_back(ep.port());
                s.listen_addresses.push_back(endpoint_text(ep));
                if (l.cfg.tls == config::tls_mode::only && s.https_port.empty()) {
                    s.https_port = std::to_string(ep.port());
                }
                if (l.cfg.tls == config::tls_mode::automatic && s.auto_port.empty()) {
                    s.auto_port = std::to_string(ep.port());
                }
            }
        }
    }

    // Where the control thread opens and binds acceptors; it never runs. A worker's context
    // takes no lock, so only its own thread may register a descriptor with it: a worker
    // moves each acceptor it is handed onto its own context.
    net::io_context binding{1};
    std::shared_ptr<serving_state> state; ///< mutable until published to the workers
    admin::observatory observatory;
    unsigned worker_count = 1;
    std::shared_ptr<tls::certificate_manager> certificates;
    std::vector<std::unique_ptr<worker>> workers;
    std::vector<bound_listener> listeners;
    /// An address a reload dropped. The workers close their sockets on it when they get to
    /// the reload, so a reload soon after may find them still listening: ours, not another
    /// process's, until every worker has closed its own.
    struct dropped_address {
        tcp::endpoint endpoint;
        std::shared_ptr<std::atomic<unsigned>> workers_left;
    };
    std::vector<dropped_address> dropped;
    std::mutex mutex; ///< guards `state`, `certificates`, `listeners` and `dropped` after `bind()`
    bool stopping = false;
};

server::server(config::config cfg) : impl_(std::make_unique<impl>(std::move(cfg))) {}

server::~server() = default;

unsigned server::worker_count() const noexcept { return impl_->worker_count; }

admin::observatory& server::observatory() noexcept { return impl_->observatory; }

std::vector<tcp::endpoint> server::endpoints() const
{
    std::lock_guard lock(impl_->mutex);
    std::vector<tcp::endpoint> out;
    for (const auto& l : impl_->listeners) {
        out.insert(out.end(), l.endpoints.begin(), l.endpoints.end());
    }
    return out;
}

std::vector<config::backend> server::backends() const
{
    std::lock_guard lock(impl_->mutex);
    return admin::backends_of(impl_->state->table.routes());
}

bind_result server::bind()
{
    bind_result result;
    const auto& listen = impl_->state->cfg.listen;
    const auto keys = listener_keys(listen);
    for (std::size_t i = 0; i < listen.size(); ++i) {
        bound_listener b;
        b.cfg = listen[i];
        b.key = keys[i];
        if (auto failure = impl_->bind_listener(b)) {
            result.error = net::error::address_in_use;
            result.message = *failure;
            impl_->listeners.clear();
            return result;
        }
        impl_->listeners.push_back(std::move(b));
    }
    // Certificates come after the sockets: a port conflict is reported before the CA in
    // ca_dir is created or read.
    std::string tls_error;
    impl_->certificates = impl_->make_certificates(impl_->state, tls_error);
    if (!impl_->certificates) {
        result.error = boost::system::error_code(EIO, boost::system::system_category());
        result.message = tls_error;
        return result;
    }
    impl_->observatory.set_certificate_counter(
        [c = impl_->certificates] { return c->certificates_issued(); });
    impl::describe_listeners(*impl_->state, impl_->listeners);
    for (std::size_t w = 0; w < impl_->workers.size(); ++w) {
        auto& wk = *impl_->workers[w];
        wk.set_certificates(impl_->certificates);
        for (auto& l : impl_->listeners) {
            for (auto& a : l.per_worker[w]) {
                wk.add_acceptor(std::move(a), l.cfg.tls, l.key);
            }
        }
    }
    for (auto& l : impl_->listeners) {
        l.per_worker.clear();
    }
    return result;
}

reload_result server::reload(config::config next_cfg)
{
    std::lock_guard lock(impl_->mutex);
    reload_result result;
    if (impl_->stopping) {
        result.message = "portico is shutting down";
        return result;
    }
    auto next = std::make_shared<serving_state>(std::move(next_cfg));
    const auto& previous = impl_->state->cfg;
    if (next->cfg.workers != previous.workers) {
        result.notes.push_back(fmt::format(
            "'workers' changed to {}; it applies when portico restarts ({} workers run now)",
            next->cfg.workers, impl_->worker_count));
    }

    // Certificates first: a failure after the new sockets listen would close them, resetting
    // the connections the kernel had queued on them meanwhile.
    auto certificates = impl_->certificates;
    const bool new_certificates =
        !same_tls(next->cfg.tls, previous.tls) || !next->cfg.tls.certificates.empty();
    if (new_certificates) {
        // User certificate files may have been replaced on disk: load them again.
        std::string error;
        certificates = impl_->make_certificates(next, error);
        if (!certificates) {
            result.message = error;
            return result;
        }
    }

    // New listeners are bound before anything else changes, so a conflict leaves the
    // running configuration untouched.
    std::vector<bound_listener> listeners;
    std::vector<std::size_t> added; ///< indexes into `listeners` bound by this reload
    std::vector<const bound_listener*> leaving; ///< listeners the new configuration drops
    const auto next_keys = listener_keys(next->cfg.listen);
    for (const auto& old : impl_->listeners) {
        if (std::find(next_keys.begin(), next_keys.end(), old.key) == next_keys.end()) {
            leaving.push_back(&old);
        }
    }
    for (std::size_t i = 0; i < next->cfg.listen.size(); ++i) {
        const auto& l = next->cfg.listen[i];
        const auto& key = next_keys[i];
        const auto old = std::find_if(impl_->listeners.begin(), impl_->listeners.end(),
                                      [&](const bound_listener& b) { return b.key == key; });
        bound_listener b;
        b.cfg = l;
        b.key = key;
        if (old != impl_->listeners.end()) {
            b.endpoints = old->endpoints;
        } else if (auto failure = impl_->bind_listener(b, listeners, leaving)) {
            result.message = *failure;
            return result; // acceptors bound so far close with `listeners`
        } else {
            added.push_back(listeners.size());
        }
        listeners.push_back(std::move(b));
    }

    if (!new_certificates) {
        certificates->set_name_filter(
            [next](std::string_view name) { return next->table.is_served_name(name); });
    }
    impl::describe_listeners(*next, listeners);

    std::vector<std::string> removed;
    for (const auto* old : leaving) {
        removed.push_back(old->key);
    }

    std::shared_ptr<const serving_state> published = next;
    // Counts down as the workers close the dropped listeners' sockets (see `dropped`).
    const auto closing = std::make_shared<std::atomic<unsigned>>(
        static_cast<unsigned>(impl_->workers.size()));
    std::erase_if(impl_->dropped,
                  [](const impl::dropped_address& d) { return d.workers_left->load() == 0; });
    for (std::size_t w = 0; w < impl_->workers.size(); ++w) {
        struct fresh_acceptor {
            std::string key;
            config::tls_mode mode;
            tcp_acceptor acceptor;
        };
        std::vector<fresh_acceptor> fresh;
        for (const auto i : added) {
            for (auto& a : listeners[i].per_worker[w]) {
                fresh.push_back(fresh_acceptor{listeners[i].key, listeners[i].cfg.tls, std::move(a)});
            }
        }
        std::vector<std::pair<std::string, config::tls_mode>> modes;
        struct takeover {
            std::string from_key;
            tcp::endpoint local;
            std::string to_key;
        };
        std::vector<takeover> takeovers;
        for (const auto& l : listeners) {
            modes.emplace_back(l.key, l.cfg.tls);
            for (const auto& [from_key, local] : l.taken_over) {
                takeovers.push_back(takeover{from_key, local, l.key});
            }
        }
        auto* wk = impl_->workers[w].get();
        const bool taken = wk->inbox().post([wk, published, certificates, fresh = std::move(fresh),
                          modes = std::move(modes), takeovers = std::move(takeovers), removed,
                          closing]() mutable {
            wk->set_state(published);
            wk->set_certificates(certificates);
            for (auto& f : fresh) {
                wk->add_acceptor(std::move(f.acceptor), f.mode, f.key);
            }
            for (const auto& t : takeovers) {
                wk->rename_acceptors(t.from_key, t.local, t.to_key);
            }
            for (const auto& [key, mode] : modes) {
                wk->set_listener_mode(key, mode);
            }
            for (const auto& key : removed) {
                wk->remove_acceptors(key);
            }
            closing->fetch_sub(1);
        });
        if (!taken) {
            // Its mailbox failed (logged then): it serves on with what it had.
            closing->fetch_sub(1);
            result.notes.push_back(fmt::format(
                "worker {} could not take the new configuration and serves the previous one", w));
        }
    }
    for (auto& l : listeners) {
        l.per_worker.clear();
    }

    // A ready line for each address that is new, or that now serves other protocols (a
    // `tls` change, kept or taken over): what a script waits for.
    const auto routes = next->table.routes().size();
    for (const auto& l : listeners) {
        for (const auto& ep : l.endpoints) {
            const auto* before = holder_of(impl_->listeners, ep);
            const bool is_new = before == nullptr;
            if (!is_new && before->cfg.tls == l.cfg.tls) {
                continue; // serving as before
            }
            const auto where = endpoint_text(ep);
            const auto proto = protocols(l.cfg.tls);
            log::announce(is_new ? "listener_added" : "listener_changed",
                          ready_message(proto, where, routes),
                          {{"listen", where}, {"protocols", proto}, {"routes", routes}});
        }
    }
    // By address, not by listener: one written another way (127.0.0.1:P as localhost:P)
    // still listens on the addresses the two share.
    std::erase_if(impl_->dropped, [&listeners](const impl::dropped_address& d) {
        return holder_of(listeners, d.endpoint) != nullptr;
    });
    for (const auto* old : leaving) {
        for (const auto& ep : old->endpoints) {
            if (holder_of(listeners, ep) == nullptr) {
                if (old->cfg.port != 0) { // a port the system chose is nobody's to keep
                    impl_->dropped.push_back({ep, closing});
                }
                const auto where = endpoint_text(ep);
                log::notice("listener_removed",
                            fmt::format("portico stopped listening on {}", where),
                            {{"listen", where}});
            }
        }
    }
    if (new_certificates) {
        impl_->observatory.set_certificate_counter(
            [certificates] { return certificates->certificates_issued(); });
    }
    impl_->certificates = std::move(certificates);
    impl_->listeners = std::move(listeners);
    impl_->state = std::move(next);
    result.ok = true;
    return result;
}

namespace {

/// Runs a worker's event loop until it stops.
void run_worker(worker& w)
{
    // An exception out of a completion handler (a library's, since portico's own coroutines
    // end in `connection_done`) would end the process and every connection with it. The
    // connection it came from is lost; the others are served on.
    for (;;) {
        try {
            w.context().run();
            return;
        } catch (const std::exception& e) {
            PORTICO_LOG(log::level::error, "handler_exception", {"what", e.what()});
        }
    }
}

} // namespace

void server::run(bool handle_signals)
{
    // Bodies spliced into a client socket (splice(2) has no MSG_NOSIGNAL) must fail with
    // EPIPE when the client has gone, not end the process.
    std::signal(SIGPIPE, SIG_IGN);
    // Signals are caught before the ready line: a script that signals as soon as it reads
    // that line must get a graceful stop, not the default action. The thread that acts on
    // them starts after the line, which is not kept waiting for it.
    std::optional<signal_watch> signals;
    if (handle_signals) {
        signals.emplace([this] { stop(); }, [this] { stop_now(); });
    }

    {
        // A reload (from the control thread, which may start before this) replaces both.
        std::lock_guard lock(impl_->mutex);
        const auto routes = impl_->state->table.routes().size();
        for (const auto& l : impl_->listeners) {
            for (const auto& ep : l.endpoints) {
                const auto where = endpoint_text(ep);
                const auto proto = protocols(l.cfg.tls);
                log::announce("ready", ready_message(proto, where, routes),
                              {{"listen", where},
                               {"protocols", proto},
                               {"routes", routes},
                               {"workers", impl_->workers.size()}});
            }
        }
    }

    if (signals) {
        signals->start();
    }
    for (auto& w : impl_->workers) {
        w->start();
    }
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < impl_->workers.size(); ++i) {
        threads.emplace_back([w = impl_->workers[i].get()] { run_worker(*w); });
    }
    run_worker(*impl_->workers.front());
    for (auto& t : threads) {
        t.join();
    }
    // One warning for the whole process, however many workers shared the connections.
    std::size_t closed = 0;
    bool forced = false;
    for (const auto& w : impl_->workers) {
        closed += w->closed_at_shutdown();
        forced = forced || w->shutdown_was_forced();
    }
    if (closed > 0) {
        PORTICO_LOG(log::level::warn, forced ? "shutdown_forced" : "shutdown_timeout",
                    {"closed_connections", closed});
    }
}

void server::stop()
{
    {
        std::lock_guard lock(impl_->mutex);
        if (impl_->stopping) {
            return;
        }
        impl_->stopping = true;
    }
    for (auto& w : impl_->workers) {
        w->inbox().post([w = w.get()] { w->begin_shutdown(); });
    }
}

bool server::is_stopping() const
{
    std::lock_guard lock(impl_->mutex);
    return impl_->stopping;
}

void server::stop_now()
{
    {
        std::lock_guard lock(impl_->mutex);
        impl_->stopping = true;
    }
    for (auto& w : impl_->workers) {
        w->inbox().post([w = w.get()] { w->end_grace_period(); });
    }
}

} // namespace portico::proxy
