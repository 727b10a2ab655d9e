#pragma once

// Real backends and clients for integration tests: blocking Beast code on loopback sockets,
// one thread per connection, every read and write bounded by a socket timeout (through a
// bounded_stream: the Asio socket's own blocking calls would ignore it).

#include <boost/asio/generic/stream_protocol.hpp>
#include "support/bounded_stream.hpp"
#include "support/process.hpp"

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace portico::test {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

using request = beast::http::request<beast::http::string_body>;
using response = beast::http::response<beast::http::string_body>;

/**
 * Sets send and receive timeouts on a socket so that no test read or write blocks for long.
 * They bound reads and writes made through a bounded_stream (or ::recv/::send), not those
 * made through the Asio socket itself.
 */
void bound_socket_waits(int fd, std::chrono::milliseconds limit = std::chrono::seconds(5));

/// A connection as a backend's handler sees it.
struct origin_connection {
    net::generic::stream_protocol::socket& socket;
    beast::flat_buffer& buffer;
    /// The socket's blocking reads and writes, each bounded (10 s); use it, not `socket`.
    bounded_stream stream;

    /// Reads one whole request (body up to 64 MiB); nullopt on EOF or error.
    std::optional<request> read_request();
    /// Writes a response.
    void write(response& res);
    /// Writes raw bytes.
    void write_raw(std::string_view bytes);
};

/**
 * Handles one connection; return to close it. The default handler answers every request
 * with 200 and a body naming the method, target and Host it saw.
 */
using origin_handler = std::function<void(origin_connection&)>;

/// A handler that accepts a WebSocket upgrade and echoes every message back.
void websocket_echo(origin_connection& c);

/// A handler that reads a request and never answers it: it waits until the proxy gives up
/// on the connection (or its own 10 s bound).
void never_answers(origin_connection& c);

/// A handler that answers one request with its body, sent back chunk by chunk as it arrives
/// (an echo, Node's `req.pipe(res)`).
void echo_body(origin_connection& c);

/// Reads a request head into `parser`, its body to be read in pieces of any total size
/// (`read_body_in_pieces`). False on a read error.
bool read_streamed_head(origin_connection& c,
                        beast::http::request_parser<beast::http::buffer_body>& parser);

/**
 * Reads the body of the request whose head `parser` has read, as it streams in, handing
 * each piece (at most `piece_size` bytes) to `take`. False on a read error.
 */
bool read_body_in_pieces(origin_connection& c,
                         beast::http::request_parser<beast::http::buffer_body>& parser,
                         std::size_t piece_size, const std::function<void(std::string_view)>& take);

/// A backend listening on loopback (or a unix socket) for the lifetime of the object.
class origin {
public:
    /// Listens on `address` ("127.0.0.1" or "::1") with an ephemeral port.
    explicit origin(origin_handler handler = {}, const std::string& address = "127.0.0.1");
    /// Listens on a unix socket at `path`.
    origin(const std::filesystem::path& path, origin_handler handler);
    ~origin();
    origin(const origin&) = delete;
    origin& operator=(const origin&) = delete;

    /// The port (0 for unix sockets).
    unsigned short port() const noexcept { return port_; }
    /// Connections accepted so far.
    int connections() const noexcept { return connections_.load(); }
    /// Requests seen by the default handler, as "METHOD TARGET".
    std::vector<std::string> seen() const;
    /// Heads of requests seen by the default handler.
    std::vector<request> seen_requests() const;

    /// The default handler: echoes what it saw, keeps the connection alive.
    void echo(origin_connection& c);

private:
    void accept_loop();

    origin_handler handler_;
    net::io_context context_;
    std::unique_ptr<net::basic_socket_acceptor<net::generic::stream_protocol>> acceptor_;
    unsigned short port_ = 0;
    std::filesystem::path unix_path_;
    std::atomic<bool> stopping_{false};
    std::atomic<int> connections_{0};
    std::thread accept_thread_;
    mutable std::mutex mutex_;
    std::vector<std::thread> connection_threads_;
    std::vector<int> open_fds_;
    std::vector<request> seen_;
};

/// A socket connected to 127.0.0.1:port with its waits bounded (5 s); read and write it
/// through a bounded_stream.
tcp::socket connect_loopback(net::io_context& context, unsigned short port);

/// Sends raw bytes to 127.0.0.1:port and returns everything received until the peer closes
/// or `limit` passes.
std::string raw_exchange(unsigned short port, std::string_view bytes,
                         std::chrono::milliseconds limit = std::chrono::seconds(5));

/// A blocking HTTP/1.1 client connection for tests.
class client {
public:
    /// Connects to 127.0.0.1:port.
    explicit client(unsigned short port);
    ~client();

    /// Sends a request and reads its response (body in memory).
    response send(request& req);
    /// Sends a GET with the given Host and extra fields.
    response get(std::string_view host, std::string_view target,
                 std::vector<std::pair<std::string, std::string>> fields = {});
    /// Writes raw bytes.
    void write_raw(std::string_view bytes);
    /// Reads one response; throws on error or timeout.
    response read_response();
    /// True when the server closed the connection (reads EOF within a second).
    bool is_closed_by_peer();
    /// What the server sends until it closes the connection (at most 1 MiB, 5 s per read).
    std::string read_until_closed();

    net::io_context context;
    tcp::socket socket;
    /// The socket's blocking reads and writes, each bounded (5 s unless bound_socket_waits
    /// says otherwise); use it, not `socket`, to read or write.
    bounded_stream stream;
    beast::flat_buffer buffer;
};

/**
 * A loopback port on which nothing listens, held (bound, never listening) on 127.0.0.1 and
 * ::1 for the object's lifetime so that no other socket, the proxy's included, gets it.
 * Connections to it are refused.
 */
class refused_port {
public:
    refused_port();
    unsigned short port() const noexcept { return port_; }

private:
    net::io_context context_;
    std::vector<tcp::socket> sockets_;
    unsigned short port_ = 0;
};

/**
 * A listening acceptor on 127.0.0.1 with an ephemeral port. `receive_buffer` > 0 sets its
 * SO_RCVBUF before it listens, which the connections it accepts take (a small one lets a
 * test fill a socket).
 */
tcp::acceptor loopback_acceptor(net::io_context& context, int receive_buffer = 0);

/// A unique empty directory under the system temp dir, removed by the destructor.
class temp_dir {
public:
    temp_dir();
    ~temp_dir();
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
};

/// Waits (bounded) until `predicate` holds; returns whether it did.
bool wait_until(const std::function<bool()>& predicate,
                std::chrono::milliseconds limit = std::chrono::seconds(5));

} // namespace portico::test

namespace portico::test {

/// A TLS backend on 127.0.0.1 serving one certificate; answers every request with
/// "tls-backend GET /path" and keeps the connection alive. After `/then-unasked` it also
/// sends a second response nobody asked for ("FORGED"), in the same TCP segment.
class tls_origin {
public:
    struct options {
        bool require_client_certificate = false; ///< portico sends none: its handshake fails
        bool tls12_only = false;
    };
    tls_origin(const std::filesystem::path& cert, const std::filesystem::path& key,
               options opts);
    tls_origin(const std::filesystem::path& cert, const std::filesystem::path& key)
        : tls_origin(cert, key, options{})
    {
    }
    ~tls_origin();
    unsigned short port() const noexcept { return port_; }

private:
    struct impl;
    std::unique_ptr<impl> impl_;
    unsigned short port_ = 0;
};

/// Makes a self-signed ECDSA certificate for `dns_name` with `openssl req`; returns false
/// (with output in `error`) on failure.
bool make_self_signed(const std::filesystem::path& cert, const std::filesystem::path& key,
                      const std::string& dns_name, const std::string& common_name,
                      std::string& error);

} // namespace portico::test
