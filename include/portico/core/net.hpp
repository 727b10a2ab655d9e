#pragma once

// Namespace aliases and the I/O object types every data-plane module uses. Each stream,
// acceptor and timer completes with `as_tuple(deferred)` by default, so coroutine code
// reads `auto [ec, n] = co_await stream.async_read_some(buf);` and handles `ec` explicitly.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace boost::beast {}
namespace boost::asio::ssl {}

namespace portico {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;

using tcp = net::ip::tcp;
using unix_protocol = net::local::stream_protocol;

/**
 * The executor everything runs on: a worker's `io_context`. Naming the concrete type rather
 * than `any_io_executor` spares every operation and coroutine step the type-erased copies,
 * `prefer` calls and destructions through a function table (a sixth of the instructions of
 * a small proxied request).
 */
using io_executor = net::io_context::executor_type;

/**
 * Completion token used by default on every portico I/O object. A coroutine that awaits a
 * deferred operation starts it directly; `use_awaitable` would first wrap it in a coroutine
 * frame of its own, allocated, resumed and freed for every read and write, and held for as
 * long as the operation waits (an idle connection's wait).
 */
using default_token = net::as_tuple_t<net::deferred_t>;

/// Token for operations combined with `||` or `&&`, which take awaitables.
inline constexpr auto as_task = net::as_tuple(net::use_awaitable_t<io_executor>{});

/// Executor whose operations default to `default_token`.
using executor = default_token::executor_with_default<io_executor>;

/// TCP socket whose operations default to `default_token`.
using tcp_socket = tcp::socket::rebind_executor<executor>::other;
/// TCP acceptor whose operations default to `default_token`.
using tcp_acceptor = tcp::acceptor::rebind_executor<executor>::other;
/// Unix-domain socket whose operations default to `default_token`.
using unix_socket = unix_protocol::socket::rebind_executor<executor>::other;
/// Steady timer whose operations default to `default_token`.
using steady_timer = net::steady_timer::rebind_executor<executor>::other;

/// Coroutine return type for portico coroutines.
template <typename T = void>
using task = net::awaitable<T, io_executor>;

} // namespace portico
