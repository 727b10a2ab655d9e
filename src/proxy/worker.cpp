#include "proxy/worker.hpp"

#include "portico/core/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <exception>

namespace portico::proxy {

worker::worker(unsigned index, std::shared_ptr<const serving_state> state)
    : index_(index), state_(std::move(state)),
      pool_(executor(context_.get_executor()), state_->cfg.timeouts),
      shutdown_timer_(context_.get_executor())
{
}

void worker::add_acceptor(tcp_acceptor acceptor, config::tls_mode mode)
{
    acceptors_.push_back(listening{std::move(acceptor), mode});
}

void worker::start()
{
    for (auto& l : acceptors_) {
        net::co_spawn(context_, accept_loop(l), net::detached);
    }
}

task<void> worker::accept_loop(listening& l)
{
    while (!draining_) {
        auto [ec, socket] = co_await l.acceptor.async_accept();
        if (ec) {
            if (ec == net::error::operation_aborted || draining_) {
                co_return;
            }
            // EMFILE and friends: log and go on; the next accept may succeed once
            // connections close.
            PORTICO_LOG(log::level::warn, "accept_failed", {"error", ec.message()});
            continue;
        }
        const std::uint64_t id = (std::uint64_t{index_} << 48) | next_connection_id_++;
        net::co_spawn(context_, serve_connection(*this, std::move(socket), id, l.mode),
                      [id](std::exception_ptr e) {
                          if (!e) {
                              return;
                          }
                          try {
                              std::rethrow_exception(e);
                          } catch (const std::exception& ex) {
                              PORTICO_LOG(log::level::error, "connection_exception",
                                          {"conn", id}, {"what", ex.what()});
                          }
                      });
    }
}

std::list<connection_entry>::iterator worker::register_connection(tcp_stream& stream)
{
    connections_.push_back(connection_entry{&stream, nullptr, true});
    return std::prev(connections_.end());
}

void worker::unregister_connection(std::list<connection_entry>::iterator it)
{
    connections_.erase(it);
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
    for (auto& c : connections_) {
        c.stream->cancel();
        if (c.upstream != nullptr) {
            c.upstream->cancel();
        }
    }
}

} // namespace portico::proxy
