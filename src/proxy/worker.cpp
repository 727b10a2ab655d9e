#include "proxy/worker.hpp"

#include "portico/core/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/version.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <exception>
#include <tuple>

namespace portico::proxy {
namespace {

/**
 * Errors accept(2) returns for one pending connection (network errors on it, a firewall's
 * refusal, an interruption) rather than for the listener: the next may be taken at once.
 */
bool is_connection_error(int error)
{
    switch (error) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

} // namespace

worker::worker(unsigned index, std::shared_ptr<const serving_state> state,
               admin::worker_stats& stats, admin::observatory& observatory)
    : index_(index), state_(std::move(state)), stats_(stats), observatory_(observatory),
      shutdown_timer_(context_.get_executor()), abandon_timer_(context_.get_executor()),
      parking_(
          context_, state_->cfg.timeouts.idle,
          [this](const parked_connection& c) { resume_parked(c); },
          [this] { stats_.connection_closed(); }),
      pool_(executor(context_.get_executor()), inbox_, state_->cfg.timeouts)
{
}

void worker::set_state(std::shared_ptr<const serving_state> next)
{
    pool_.set_timeouts(next->cfg.timeouts);
    parking_.set_idle(next->cfg.timeouts.idle);
    state_ = std::move(next);
}

void worker::set_certificates(std::shared_ptr<tls::certificate_manager> c)
{
    if (certificates_ && certificates_ != c) {
        // Pooled https connections were verified with the old trust settings.
        pool_.clear();
    }
    certificates_ = std::move(c);
    pool_.set_certificates(*certificates_);
}

void worker::add_acceptor(tcp_acceptor bound, config::tls_mode mode, std::string key)
{
    boost::system::error_code ec;
    const auto local = bound.local_endpoint(ec);
    // Registered with this worker's reactor here, on its thread (see `context_`).
    tcp_acceptor acceptor(get_executor());
    if (ec) {
        // Not a listening socket any more; nothing to accept on.
    } else if (const int fd = bound.release(ec); !ec) {
        acceptor.assign(local.protocol(), fd, ec);
        if (ec) {
            ::close(fd);
        }
    }
    if (ec) {
        PORTICO_LOG(log::level::error, "accept_failed", {"listen", key}, {"error", ec.message()});
        return;
    }
    acceptors_.push_back(listening{std::move(acceptor), mode, std::move(key), local,
                                   local.address().is_unspecified(), false,
                                   steady_timer(get_executor())});
    if (started_ && !draining_) {
        net::co_spawn(context_, accept_loop(std::prev(acceptors_.end())), net::detached);
    }
}

void worker::remove_acceptors(const std::string& key)
{
    for (auto& l : acceptors_) {
        if (l.key == key && !l.removed) {
            l.removed = true;
            // Connections already queued on this socket would be reset by its close; the
            // listener that replaces it (or another worker's) takes the ones to come.
            boost::system::error_code mode_ec;
            l.acceptor.non_blocking(true, mode_ec); // its loop may not have set it yet
            for (std::size_t taken = 0; taken < max_drained_on_removal && !mode_ec; ++taken) {
                tcp::endpoint remote;
                socklen_t length = static_cast<socklen_t>(remote.capacity());
                const int fd = ::accept4(l.acceptor.native_handle(), remote.data(), &length,
                                         SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                    if (is_connection_error(errno)) {
                        continue;
                    }
                    break; // none left (or no resources: those left are reset as before)
                }
                remote.resize(length);
                serve_accepted(l, fd, remote);
            }
            boost::system::error_code ec;
            l.acceptor.close(ec);
            l.pause.cancel();
        }
    }
}

void worker::rename_acceptors(const std::string& from_key, const tcp::endpoint& local,
                              const std::string& to_key)
{
    for (auto& l : acceptors_) {
        if (l.key == from_key && l.local == local && !l.removed) {
            l.key = to_key;
        }
    }
}

void worker::set_listener_mode(const std::string& key, config::tls_mode mode)
{
    for (auto& l : acceptors_) {
        if (l.key == key) {
            l.mode = mode;
        }
    }
}

void worker::start()
{
    started_ = true;
    inbox_.open();
    for (auto it = acceptors_.begin(); it != acceptors_.end(); ++it) {
        net::co_spawn(context_, accept_loop(it), net::detached);
    }
}

void worker::serve_accepted(const listening& l, int fd, const tcp::endpoint& remote)
{
    const std::uint64_t id = (std::uint64_t{index_} << 48) | next_connection_id_++;
    tcp::endpoint local = l.local;
    if (l.wildcard) {
        socklen_t length = static_cast<socklen_t>(local.capacity());
        if (::getsockname(fd, local.data(), &length) == 0) {
            local.resize(length);
        } else {
            local = l.local;
        }
    }
    // The descriptor goes to the connection unregistered: the reactor takes it only if the
    // connection has to wait (see `deadline_stream`).
    net::co_spawn(context_,
                  serve_connection(*this, tcp_stream(get_executor(), l.local.protocol(), fd),
                                   remote, local, id, l.mode),
                  connection_done{id});
}

void worker::resume_parked(const parked_connection& c)
{
    net::co_spawn(context_,
                  serve_unparked(*this, tcp_stream(get_executor(), c.remote.protocol(), c.fd), c),
                  connection_done{c.id});
}

task<void> worker::accept_loop(std::list<listening>::iterator it)
{
    auto& l = *it;
    if (l.removed) {
        // A reload that came before this loop first ran has already closed it.
        if (!draining_) {
            acceptors_.erase(it);
        }
        co_return;
    }
    const int listen_fd = l.acceptor.native_handle();
    bool failing = false; ///< the last accept failed for want of resources
    boost::system::error_code mode_ec;
    l.acceptor.non_blocking(true, mode_ec); // accept4 below must not block the worker
    if (mode_ec) {
        PORTICO_LOG(log::level::error, "accept_failed", {"error", mode_ec.message()});
        co_return;
    }
    while (!draining_ && !l.removed) {
        // Take every pending connection with accept4: born non-blocking, with the peer's
        // address, and (unless the listener is a wildcard) the listener's local address: no
        // getpeername/getsockname/ioctl per connection. Then wait for the next one; taking
        // them first also covers connections that were pending before this loop started.
        tcp::endpoint remote;
        socklen_t length = static_cast<socklen_t>(remote.capacity());
        const int fd = ::accept4(listen_fd, remote.data(), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            const int error = errno;
            if (is_connection_error(error)) {
                continue; // that connection failed or is gone; others may be pending
            }
            boost::system::error_code ec;
            if (error == EAGAIN || error == EWOULDBLOCK) {
                // None left. The wait starts before this coroutine yields, so a connection
                // arriving from now on is seen as a new edge by the reactor.
                std::tie(ec) = co_await l.acceptor.async_wait(tcp::acceptor::wait_read);
                if (!ec || ec == net::error::operation_aborted) {
                    continue;
                }
            } else {
                ec.assign(error, boost::system::system_category());
            }
            // EMFILE and friends: pending connections stay queued; retry once some close.
            // Logged once per episode, not at every retry.
            if (!failing) {
                PORTICO_LOG(log::level::warn, "accept_failed", {"error", ec.message()});
                failing = true;
            }
            l.pause.expires_after(std::chrono::milliseconds(100));
            co_await l.pause.async_wait();
            continue;
        }
        failing = false;
        remote.resize(length);
        serve_accepted(l, fd, remote);
        // The new connection ran up to its first read; let the work queued meanwhile (its
        // request, those of others) run before taking the next one: a backlog taken in
        // one go would have every new connection's request in flight at once.
        co_await net::post(get_executor(), net::deferred);
    }
    if (l.removed && !draining_) {
        acceptors_.erase(it);
    }
}

void connection_done::operator()(std::exception_ptr e) const
{
    if (!e) {
        return;
    }
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        PORTICO_LOG(log::level::error, "connection_exception", {"conn", id}, {"what", ex.what()});
    }
}

void worker::register_connection(connection_entry& entry, bool resumed) noexcept
{
    connections_.push_back(entry);
    trimmer_.serving(connections_.size());
    if (!resumed) {
        stats_.connection_opened();
    }
}

void worker::unregister_connection(connection_entry& entry, bool parked) noexcept
{
    connections_.erase(connections_.iterator_to(entry));
    trimmer_.serving(connections_.size());
    if (!parked) {
        stats_.connection_closed();
    }
    if (draining_ && connections_.empty()) {
        shutdown_timer_.cancel();
        abandon_timer_.cancel();
        inbox_.close();
    }
}

void worker::arm_abandon_watch()
{
    abandon_watch_armed_ = true;
    abandon_timer_.expires_after(std::chrono::seconds(1));
    abandon_timer_.async_wait([this](const boost::system::error_code& ec) {
        abandon_watch_armed_ = false;
        if (!ec) {
            look_for_abandoned();
        }
    });
}

void worker::look_for_abandoned()
{
    bool waiting = false;
    for (auto& c : connections_) {
        // A client found gone is looked at again: a cancel finds nothing to cancel while
        // the exchange is writing to the client, and the next look catches its next wait.
        if (c.upstream == nullptr || c.tunnel) {
            continue;
        }
        waiting = true;
        // POLLRDHUP: the client's FIN has arrived, even behind bytes not read yet (a TLS
        // client's close_notify).
        pollfd p{c.stream->descriptor(), POLLRDHUP, 0};
        if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
            c.client_gone = true;
            c.upstream->cancel();
        }
    }
    if (waiting && !past_deadline_) {
        arm_abandon_watch();
    }
}

void worker::begin_shutdown()
{
    if (draining_) {
        return;
    }
    draining_ = true;
    trimmer_.cancel(); // a wait for a trim would hold the loop up to its delay
    for (auto& l : acceptors_) {
        boost::system::error_code ec;
        l.acceptor.close(ec);
        l.pause.cancel();
    }
    pool_.clear();
    parking_.close_all();
    for (auto& c : connections_) {
        if (c.idle) {
            c.stream->cancel();
        }
    }
    if (connections_.empty()) {
        abandon_timer_.cancel(); // armed by the last exchange, it would hold the loop a second
        inbox_.close();
    } else {
        net::co_spawn(context_, shutdown_deadline(), net::detached);
    }
}

task<void> worker::shutdown_deadline()
{
    shutdown_timer_.expires_after(state_->cfg.timeouts.shutdown);
    auto [ec] = co_await shutdown_timer_.async_wait();
    if (ec || connections_.empty() || past_deadline_) {
        co_return;
    }
    close_remaining(false);
}

void worker::end_grace_period()
{
    begin_shutdown();
    if (connections_.empty() || past_deadline_) {
        return;
    }
    close_remaining(true);
}

void worker::close_remaining(bool forced)
{
    // Counted here, said once for all workers when they have stopped (`server::run`).
    closed_at_shutdown_ = connections_.size();
    shutdown_forced_ = forced;
    past_deadline_ = true;
    for (auto& c : connections_) {
        c.stream->cancel();
        if (c.upstream != nullptr) {
            c.upstream->cancel();
        }
    }
    // A request still waiting for a backend's name has no upstream to cancel yet.
    pool_.cancel_resolves();
}

} // namespace portico::proxy
