#pragma once

// Stream types of the data plane. Upstream connections use Asio's generic stream protocol so
// that TCP (IPv4, IPv6) and unix-domain backends share one type and one code path.

#include "portico/core/net.hpp"

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/rate_policy.hpp>

#include <string>

namespace portico::proxy {

/// A client connection over TCP, with per-operation deadlines.
using tcp_stream = beast::basic_stream<tcp, executor, beast::unlimited_rate_policy>;

/// The protocol of upstream sockets (AF_INET, AF_INET6 or AF_UNIX).
using upstream_protocol = net::generic::stream_protocol;

/// A backend connection, with per-operation deadlines.
using upstream_stream =
    beast::basic_stream<upstream_protocol, executor, beast::unlimited_rate_policy>;

/// `127.0.0.1:7080` or `[::1]:7080`, as logs, error pages and ready lines show addresses.
std::string endpoint_text(const tcp::endpoint& ep);

} // namespace portico::proxy
