#include "support/origin.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <fmt/format.h>
#include <boost/beast/http/write.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <random>
#include <stdexcept>

namespace portico::test {

void bound_socket_waits(int fd, std::chrono::milliseconds limit)
{
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(limit.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((limit.count() % 1000) * 1000);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

std::optional<request> origin_connection::read_request()
{
    beast::http::request_parser<beast::http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    boost::system::error_code ec;
    beast::http::read(stream, buffer, parser, ec);
    if (ec) {
        return std::nullopt;
    }
    return parser.release();
}

void origin_connection::write(response& res)
{
    boost::system::error_code ec;
    beast::http::write(stream, res, ec);
}

void origin_connection::write_raw(std::string_view bytes)
{
    boost::system::error_code ec;
    net::write(stream, net::buffer(bytes.data(), bytes.size()), ec);
}

origin::origin(origin_handler handler, const std::string& address) : handler_(std::move(handler))
{
    const tcp::endpoint ep(net::ip::make_address(address), 0);
    acceptor_ = std::make_unique<net::basic_socket_acceptor<net::generic::stream_protocol>>(
        context_, net::generic::stream_protocol::endpoint(ep));
    tcp::endpoint bound;
    bound.resize(acceptor_->local_endpoint().size());
    std::memcpy(bound.data(), acceptor_->local_endpoint().data(), bound.size());
    port_ = bound.port();
    accept_thread_ = std::thread([this] { accept_loop(); });
}

origin::origin(const std::filesystem::path& path, origin_handler handler)
    : handler_(std::move(handler)), unix_path_(path)
{
    std::filesystem::remove(path);
    acceptor_ = std::make_unique<net::basic_socket_acceptor<net::generic::stream_protocol>>(
        context_,
        net::generic::stream_protocol::endpoint(net::local::stream_protocol::endpoint(path.native())));
    accept_thread_ = std::thread([this] { accept_loop(); });
}

origin::~origin()
{
    stopping_ = true;
    // shutdown(2) wakes the blocked accept; the descriptor is closed only once the accept
    // thread has left it, so that its number cannot be reused under that thread.
    ::shutdown(acceptor_->native_handle(), SHUT_RDWR);
    accept_thread_.join();
    boost::system::error_code ec;
    acceptor_->close(ec);
    std::vector<std::thread> threads;
    {
        std::lock_guard lock(mutex_);
        for (int fd : open_fds_) {
            ::shutdown(fd, SHUT_RDWR);
        }
        threads.swap(connection_threads_);
    }
    for (auto& t : threads) {
        t.join();
    }
    if (!unix_path_.empty()) {
        std::filesystem::remove(unix_path_, ec);
    }
}

std::vector<std::string> origin::seen() const
{
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (const auto& r : seen_) {
        out.push_back(std::string(r.method_string()) + " " + std::string(r.target()));
    }
    return out;
}

std::vector<request> origin::seen_requests() const
{
    std::lock_guard lock(mutex_);
    return seen_;
}

void origin::echo(origin_connection& c)
{
    for (;;) {
        auto req = c.read_request();
        if (!req) {
            return;
        }
        {
            std::lock_guard lock(mutex_);
            seen_.push_back(*req);
        }
        response res{beast::http::status::ok, req->version()};
        res.set(beast::http::field::content_type, "text/plain");
        res.body() = std::string(req->method_string()) + " " + std::string(req->target()) +
                     " host=" + std::string((*req)[beast::http::field::host]) +
                     " body=" + std::to_string(req->body().size());
        res.keep_alive(req->keep_alive());
        res.prepare_payload();
        c.write(res);
        if (!req->keep_alive()) {
            return;
        }
    }
}

void origin::accept_loop()
{
    while (!stopping_) {
        boost::system::error_code ec;
        auto socket = std::make_shared<net::generic::stream_protocol::socket>(context_);
        acceptor_->accept(*socket, ec);
        if (ec || stopping_) {
            return;
        }
        ++connections_;
        bound_socket_waits(socket->native_handle(), std::chrono::seconds(10));
        std::lock_guard lock(mutex_);
        open_fds_.push_back(socket->native_handle());
        connection_threads_.emplace_back([this, socket] {
            beast::flat_buffer buffer;
            origin_connection c{*socket, buffer, bounded_stream(*socket)};
            if (handler_) {
                handler_(c);
            } else {
                echo(c);
            }
            boost::system::error_code ignored;
            socket->shutdown(net::socket_base::shutdown_both, ignored);
        });
    }
}

std::string raw_exchange(unsigned short port, std::string_view bytes,
                         std::chrono::milliseconds limit)
{
    net::io_context ctx;
    tcp::socket s(ctx);
    s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    bound_socket_waits(s.native_handle(), limit);
    bounded_stream stream(s);
    boost::system::error_code ec;
    net::write(stream, net::buffer(bytes.data(), bytes.size()), ec);
    std::string received;
    std::array<char, 16384> chunk{};
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        const auto n = stream.read_some(net::buffer(chunk), ec);
        if (ec) {
            break;
        }
        received.append(chunk.data(), n);
    }
    return received;
}

tcp::socket connect_loopback(net::io_context& context, unsigned short port)
{
    tcp::socket socket(context);
    socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    bound_socket_waits(socket.native_handle());
    return socket;
}

client::client(unsigned short port) : socket(connect_loopback(context, port)), stream(socket) {}

client::~client()
{
    boost::system::error_code ec;
    socket.close(ec);
}

response client::send(request& req)
{
    beast::http::write(stream, req);
    return read_response();
}

response client::get(std::string_view host, std::string_view target,
                     std::vector<std::pair<std::string, std::string>> fields)
{
    request req{beast::http::verb::get, target, 11};
    req.set(beast::http::field::host, host);
    for (const auto& [name, value] : fields) {
        req.insert(name, value); // a name given twice is sent twice
    }
    return send(req);
}

void client::write_raw(std::string_view bytes)
{
    net::write(stream, net::buffer(bytes.data(), bytes.size()));
}

response client::read_response()
{
    beast::http::response_parser<beast::http::string_body> parser;
    parser.body_limit(256 * 1024 * 1024);
    beast::http::read(stream, buffer, parser);
    return parser.release();
}

bool client::is_closed_by_peer()
{
    bound_socket_waits(socket.native_handle(), std::chrono::seconds(1));
    std::array<char, 256> chunk{};
    boost::system::error_code ec;
    for (int i = 0; i < 64; ++i) {
        stream.read_some(net::buffer(chunk), ec);
        if (ec) {
            return ec == net::error::eof || ec == net::error::connection_reset;
        }
    }
    return false;
}

void never_answers(origin_connection& c)
{
    c.read_request();
    std::array<char, 16> sink{};
    boost::system::error_code ec;
    c.stream.read_some(net::buffer(sink), ec);
}

bool read_body_in_pieces(origin_connection& c,
                         beast::http::request_parser<beast::http::buffer_body>& parser,
                         std::size_t piece_size, const std::function<void(std::string_view)>& take)
{
    std::vector<char> piece(piece_size);
    boost::system::error_code ec;
    while (!parser.is_done()) {
        parser.get().body().data = piece.data();
        parser.get().body().size = piece.size();
        beast::http::read_some(c.stream, c.buffer, parser, ec);
        if (ec == beast::http::error::need_buffer) {
            ec = {};
        }
        if (ec) {
            return false;
        }
        take(std::string_view(piece.data(), piece.size() - parser.get().body().size));
    }
    return true;
}

bool read_streamed_head(origin_connection& c,
                        beast::http::request_parser<beast::http::buffer_body>& parser)
{
    parser.body_limit(boost::none);
    boost::system::error_code ec;
    beast::http::read_header(c.stream, c.buffer, parser, ec);
    return !ec;
}

void echo_body(origin_connection& c)
{
    beast::http::request_parser<beast::http::buffer_body> parser;
    if (!read_streamed_head(c, parser)) {
        return;
    }
    c.write_raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    const bool whole = read_body_in_pieces(c, parser, 64 * 1024, [&c](std::string_view piece) {
        if (!piece.empty()) {
            c.write_raw(fmt::format("{:x}\r\n{}\r\n", piece.size(), piece));
        }
    });
    if (whole) {
        c.write_raw("0\r\n\r\n");
    }
}

std::string client::read_until_closed()
{
    std::string received(static_cast<const char*>(buffer.data().data()), buffer.size());
    buffer.consume(buffer.size());
    std::array<char, 4096> chunk{};
    boost::system::error_code ec;
    while (!ec && received.size() < 1024 * 1024) {
        const auto n = stream.read_some(net::buffer(chunk), ec);
        received.append(chunk.data(), n);
    }
    return received;
}

refused_port::refused_port()
{
    // Bound but not listening: the kernel refuses connections, and the port stays taken.
    for (int attempt = 0; attempt < 20; ++attempt) {
        sockets_.clear();
        tcp::socket v4(context_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
        port_ = v4.local_endpoint().port();
        tcp::socket v6(context_, tcp::v6());
        boost::system::error_code ec;
        v6.set_option(net::ip::v6_only(true), ec);
        v6.bind(tcp::endpoint(net::ip::make_address("::1"), port_), ec);
        sockets_.push_back(std::move(v4));
        if (!ec) {
            sockets_.push_back(std::move(v6));
            return;
        }
    }
    throw std::runtime_error("no loopback port free on both 127.0.0.1 and ::1");
}

tcp::acceptor loopback_acceptor(net::io_context& context, int receive_buffer)
{
    tcp::acceptor acceptor(context);
    acceptor.open(tcp::v4());
    if (receive_buffer > 0) {
        acceptor.set_option(net::socket_base::receive_buffer_size(receive_buffer));
    }
    acceptor.bind({net::ip::address_v4::loopback(), 0});
    acceptor.listen();
    return acceptor;
}

temp_dir::temp_dir()
{
    std::random_device rd;
    for (;;) {
        path_ = std::filesystem::temp_directory_path() /
                ("portico-test-" + std::to_string(rd()) + std::to_string(::getpid()));
        if (std::filesystem::create_directory(path_)) {
            return;
        }
    }
}

temp_dir::~temp_dir()
{
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

bool wait_until(const std::function<bool()>& predicate, std::chrono::milliseconds limit)
{
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (predicate()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return predicate();
}

} // namespace portico::test
