#include "portico/proxy/server.hpp"

#include "proxy/worker.hpp"

#include "portico/core/log.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>

#include <sys/socket.h>

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

} // namespace

struct server::impl {
    explicit impl(config::config cfg)
        : state(std::make_shared<const serving_state>(std::move(cfg)))
    {
        worker_count = state->cfg.workers;
        if (worker_count == 0) {
            worker_count = std::max(1U, std::thread::hardware_concurrency());
        }
        for (unsigned i = 0; i < worker_count; ++i) {
            workers.push_back(std::make_unique<worker>(i, state));
        }
    }

    std::shared_ptr<const serving_state> state;
    unsigned worker_count = 1;
    std::unique_ptr<tls::certificate_manager> certificates;
    std::vector<std::unique_ptr<worker>> workers;
    std::vector<tcp::endpoint> bound;
    std::vector<config::tls_mode> bound_modes;
    std::optional<net::signal_set> signals; ///< on worker 0, while `run` handles signals
    std::mutex stop_mutex;
    bool stopping = false;
};

server::server(config::config cfg) : impl_(std::make_unique<impl>(std::move(cfg))) {}

server::~server() = default;

unsigned server::worker_count() const noexcept { return impl_->worker_count; }

std::vector<tcp::endpoint> server::endpoints() const { return impl_->bound; }

bind_result server::bind()
{
    bind_result result;
    for (const auto& l : impl_->state->cfg.listen) {
        for (const auto& address : listen_addresses(l)) {
            tcp::endpoint ep(address, l.port);
            // Every worker binds its own acceptor to the same address (SO_REUSEPORT), so the
            // kernel spreads connections and none crosses threads. With port 0 the first
            // acceptor picks the port and the others follow it.
            for (auto& w : impl_->workers) {
                tcp_acceptor acceptor(w->get_executor());
                boost::system::error_code ec;
                acceptor.open(ep.protocol(), ec);
                if (!ec) {
                    acceptor.set_option(net::socket_base::reuse_address(true), ec);
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
                    result.error = ec;
                    const auto where = endpoint_text(ep);
                    if (ec == net::error::address_in_use) {
                        result.message = fmt::format(
                            "cannot listen on {}: port {} is already in use by another "
                            "process; stop it (see `ss -ltnp 'sport = :{}'`) or change "
                            "'listen' in the configuration",
                            where, ep.port(), ep.port());
                    } else if (ec == net::error::access_denied) {
                        result.message = fmt::format(
                            "cannot listen on {}: permission denied (ports below 1024 need "
                            "root or CAP_NET_BIND_SERVICE); choose a port above 1023",
                            where);
                    } else {
                        result.message =
                            fmt::format("cannot listen on {}: {}", where, ec.message());
                    }
                    return result;
                }
                ep = acceptor.local_endpoint();
                w->add_acceptor(std::move(acceptor), l.tls);
            }
            impl_->bound.push_back(ep);
            impl_->bound_modes.push_back(l.tls);
        }
    }
    // Certificates come after the sockets: a port conflict is reported before the CA in
    // ca_dir is created or read.
    std::string tls_error;
    auto state = impl_->state;
    impl_->certificates = tls::certificate_manager::create(
        state->cfg.tls,
        [state](std::string_view name) { return state->table.is_served_name(name); },
        tls_error);
    if (!impl_->certificates) {
        result.error = boost::system::error_code(EIO, boost::system::system_category());
        result.message = tls_error;
        return result;
    }
    for (auto& w : impl_->workers) {
        w->set_certificates(*impl_->certificates);
    }

    // redirect_https goes to a `tls: only` listener's port when there is one.
    for (std::size_t i = 0; i < impl_->bound.size(); ++i) {
        if (impl_->bound_modes[i] == config::tls_mode::only) {
            for (auto& w : impl_->workers) {
                w->set_https_port(std::to_string(impl_->bound[i].port()));
            }
            break;
        }
    }
    return result;
}

void server::run(bool handle_signals)
{
    // Signals are caught before the ready line: a script that signals as soon as it reads
    // that line must get a graceful stop, not the default action.
    if (handle_signals) {
        impl_->signals.emplace(impl_->workers.front()->context(), SIGINT, SIGTERM);
        impl_->signals->async_wait([this](const boost::system::error_code& ec, int) {
            if (!ec) {
                stop();
            }
        });
    }

    const auto routes = impl_->state->cfg.routes.size();
    for (std::size_t i = 0; i < impl_->bound.size(); ++i) {
        const auto where = endpoint_text(impl_->bound[i]);
        const auto proto = protocols(impl_->bound_modes[i]);
        log::notice("ready",
                    fmt::format("portico ready: {} on {} ({} route{})", proto, where, routes,
                                routes == 1 ? "" : "s"),
                    {{"listen", where},
                     {"protocols", proto},
                     {"routes", routes},
                     {"workers", impl_->workers.size()}});
    }

    for (auto& w : impl_->workers) {
        w->start();
    }
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < impl_->workers.size(); ++i) {
        threads.emplace_back([w = impl_->workers[i].get()] { w->context().run(); });
    }
    impl_->workers.front()->context().run();
    for (auto& t : threads) {
        t.join();
    }
}

void server::stop()
{
    {
        std::lock_guard lock(impl_->stop_mutex);
        if (impl_->stopping) {
            return;
        }
        impl_->stopping = true;
    }
    for (auto& w : impl_->workers) {
        net::post(w->context(), [w = w.get()] { w->begin_shutdown(); });
    }
    // A pending signal wait would keep worker 0's loop alive after the last connection.
    net::post(impl_->workers.front()->context(), [this] {
        if (impl_->signals) {
            impl_->signals->cancel();
        }
    });
}

} // namespace portico::proxy
