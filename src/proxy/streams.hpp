#pragma once

// Stream types of the data plane. Upstream connections use Asio's generic stream protocol so
// that TCP (IPv4, IPv6) and unix-domain backends share one type and one code path.

#include "portico/core/net.hpp"

#include "proxy/deadline_stream.hpp"

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <sys/uio.h>

#include <span>
#include <string>

namespace portico::proxy {

/// A client connection over TCP, with a deadline.
using tcp_stream = deadline_stream<tcp>;

/// The protocol of upstream sockets (AF_INET, AF_INET6 or AF_UNIX).
using upstream_protocol = net::generic::stream_protocol;

/// A backend connection, with a deadline.
using upstream_stream = deadline_stream<upstream_protocol>;

/// Points `parts` at the non-empty buffers of `buffers`, as many as fit; returns how many.
std::size_t gather_parts(std::span<const net::const_buffer> buffers, std::span<iovec> parts);

/// Advances `buffers` past the first `sent` bytes, which a send took.
void consume_sent(std::span<net::const_buffer> buffers, std::size_t sent);

/**
 * Sends what the socket takes at once of `buffers` (of the first eight non-empty ones),
 * without waiting, and leaves in `buffers` what it did not take. `ec` is set only for a
 * failed socket; a full send buffer leaves everything in place.
 */
void send_available(int socket, std::span<net::const_buffer> buffers, boost::system::error_code& ec,
                    int flags = 0);

template <typename Protocol>
void send_available(deadline_stream<Protocol>& s, std::span<net::const_buffer> buffers,
                    boost::system::error_code& ec, int flags = 0)
{
    send_available(s.descriptor(), buffers, ec, flags);
}

/// `127.0.0.1:7080` or `[::1]:7080`, as logs, error pages and ready lines show addresses.
std::string endpoint_text(const tcp::endpoint& ep);

/// `127.0.0.1` or `::1`, as X-Forwarded-For carries a client.
std::string address_text(const net::ip::address& a);

} // namespace portico::proxy
