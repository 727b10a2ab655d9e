#include "proxy/worker.hpp"

#include "portico/core/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <exception>

namespace portico::proxy {

worker::worker(unsigned index, std::shared_ptr<const serving_state> state,
               admin::worker_stats& stats, admin::observatory& observatory)
    : index_(index), state_(std::move(state)), stats_(stats), observatory_(observatory),
      pool_(executor(context_.get_executor()), state_->cfg.timeouts),
      shutdown_timer_(context_.get_executor())
{
}

void worker::set_state(std::shared_ptr<const serving_state> next)
{
    pool_.set_timeouts(next->cfg.timeouts);
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

void worker::add_acceptor(tcp_acceptor acceptor, config::tls_mode mode, std::string key)
{
    boost::system::error_code ec;
    const auto local = acceptor.local_endpoint(ec);
    acceptors_.push_back(
        listening{std::move(acceptor), mode, std::move(key), local, local.address().is_unspecified()});
    if (started_ && !draining_) {
        net::co_spawn(context_, accept_loop(std::prev(acceptors_.end())), net::detached);
    }
}

void worker::remove_acceptors(const std::string& key)
{
    for (auto& l : acceptors_) {
        if (l.key == key && !l.removed) {
            l.removed = true;
            boost::system::error_code ec;
            l.acceptor.close(ec);
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
    for (auto it = acceptors_.begin(); it != acceptors_.end(); ++it) {
        net::co_spawn(context_, accept_loop(it), net::detached);
    }
}

task<void> worker::accept_loop(std::list<listening>::iterator it)
{
    auto& l = *it;
    while (!draining_ && !l.removed) {
        // The peer's address comes with the accept, and the local one is the listener's
        // unless it is a wildcard: no getpeername/getsockname per connection.
        tcp::endpoint remote;
        auto [ec, socket] = co_await l.acceptor.async_accept(remote);
        if (ec) {
            if (ec == net::error::operation_aborted || draining_ || l.removed) {
                break;
            }
            // EMFILE and friends: log and go on; the next accept may succeed once
            // connections close.
            PORTICO_LOG(log::level::warn, "accept_failed", {"error", ec.message()});
            continue;
        }
        const std::uint64_t id = (std::uint64_t{index_} << 48) | next_connection_id_++;
        tcp::endpoint local = l.local;
        if (l.wildcard) {
            boost::system::error_code lec;
            local = socket.local_endpoint(lec);
        }
        net::co_spawn(context_,
                      serve_connection(*this, std::move(socket), remote, local, id, l.mode),
                      connection_done{id});
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

std::list<connection_entry>::iterator worker::register_connection(tcp_stream& stream)
{
    connections_.push_back(connection_entry{&stream, nullptr, true});
    stats_.connection_opened();
    return std::prev(connections_.end());
}

void worker::unregister_connection(std::list<connection_entry>::iterator it)
{
    connections_.erase(it);
    stats_.connection_closed();
    if (draining_ && connections_.empty()) {
        shutdown_timer_.cancel();
    }
}

void worker::begin_shutdown()
{
    if (draining_) {
        return;
    }
    draining_ = true;
    for (auto& l : acceptors_) {
        boost::system::error_code ec;
        l.acceptor.close(ec);
    }
    pool_.clear();
    for (auto& c : connections_) {
        if (c.idle) {
            c.stream->cancel();
        }
    }
    if (!connections_.empty()) {
        net::co_spawn(context_, shutdown_deadline(), net::detached);
    }
}

task<void> worker::shutdown_deadline()
{
    shutdown_timer_.expires_after(state_->cfg.timeouts.shutdown);
    auto [ec] = co_await shutdown_timer_.async_wait();
    if (ec || connections_.empty()) {
        co_return;
    }
    PORTICO_LOG(log::level::warn, "shutdown_timeout", {"worker", index_},
                {"closed_connections", connections_.size()});
    past_deadline_ = true;
    for (auto& c : connections_) {
        c.stream->cancel();
        if (c.upstream != nullptr) {
            c.upstream->cancel();
        }
    }
}

} // namespace portico::proxy
