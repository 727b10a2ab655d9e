// Streaming behaviour: tunnels, server-sent events, bodies that outlive buffers, backends
// that die, rewrites on the way, and graceful shutdown with work in flight.

#include "support/origin.hpp"
#include "support/proxy_harness.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <thread>
#include <vector>

namespace portico::test {
namespace {

std::string route_to(unsigned short port, std::string_view extra = "")
{
    return fmt::format("routes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n{}", port, extra);
}

TEST(TunnelTest, WebSocketEchoesThousandMessages)
{
    origin backend(websocket_echo);
    proxy_harness proxy(route_to(backend.port()));
    net::io_context ctx;
    auto socket = connect_loopback(ctx, proxy.port());
    beast::websocket::stream<bounded_stream> ws(socket);
    ws.handshake("app.localhost", "/hmr");
    beast::flat_buffer buffer;
    for (int i = 0; i < 1000; ++i) {
        const auto message = fmt::format("message {}", i);
        ws.write(net::buffer(message));
        ws.read(buffer);
        ASSERT_EQ(beast::buffers_to_string(buffer.data()), message);
        buffer.consume(buffer.size());
    }
    ws.close(beast::websocket::close_code::normal);
}

constexpr std::string_view upgrade_request = "GET /ws HTTP/1.1\r\nHost: app.localhost\r\n"
                                            "Connection: Upgrade\r\nUpgrade: test-echo\r\n\r\n";

/// Answers an upgrade with 101 and returns; false when no upgrade request came.
bool switch_protocols(origin_connection& c)
{
    if (!c.read_request()) {
        return false;
    }
    c.write_raw("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                "Upgrade: test-echo\r\n\r\n");
    return true;
}

/// Opens a tunnel through the proxy; the client's socket, past the 101 head. What came
/// after the head in the same read goes to `early` when given.
tcp::socket open_tunnel(net::io_context& ctx, unsigned short port, std::string* early = nullptr)
{
    auto socket = connect_loopback(ctx, port);
    bounded_stream stream(socket);
    net::write(stream, net::buffer(upgrade_request));
    std::string head;
    const auto end = net::read_until(stream, net::dynamic_buffer(head), "\r\n\r\n");
    EXPECT_TRUE(head.starts_with("HTTP/1.1 101 ")) << head;
    if (early != nullptr) {
        *early = head.substr(end);
    }
    return socket;
}

/// Closes with a reset (SO_LINGER 0), as a killed browser tab or a crashed client does.
void reset(tcp::socket& socket)
{
    socket.set_option(net::socket_base::linger(true, 0));
    socket.close();
}

TEST(TunnelTest, ClientResetWhileBothSidesPushBackEndsTheTunnel)
{
    // The backend writes and never reads, like an echo blocked in its own send: once the
    // client stops reading, both directions of the tunnel wait on a full buffer. After the
    // reset, what the client sent before it still waits to reach the backend: the write
    // gives up after timeouts.idle.
    std::atomic<bool> backend_done{false};
    origin backend([&backend_done](origin_connection& c) {
        if (switch_protocols(c)) {
            const std::string chunk(64 * 1024, 'b');
            boost::system::error_code ec;
            while (!ec) {
                net::write(c.stream, net::buffer(chunk), ec);
            }
        }
        backend_done = true;
    });
    proxy_harness proxy(route_to(backend.port(), "timeouts:\n  idle: 1s\n"));
    net::io_context ctx;
    auto socket = open_tunnel(ctx, proxy.port());
    socket.non_blocking(true);
    // Push until every buffer on the way to the backend is full: a pause lets portico move
    // what it can, so the client is stopped for good only once portico's own write to the
    // backend waits.
    const std::string chunk(64 * 1024, 'c');
    bool stalled = false;
    for (int round = 0; round < 100 && !stalled; ++round) {
        std::size_t moved = 0;
        boost::system::error_code ec;
        while (!ec) {
            moved += socket.write_some(net::buffer(chunk), ec);
        }
        ASSERT_EQ(ec, net::error::would_block);
        stalled = moved == 0 && round > 0;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_TRUE(stalled);
    ASSERT_TRUE(wait_until([&] { return proxy.observatory().active_tunnels() == 1; }));
    reset(socket);
    // The backend's own sends give up only after 10 s: the tunnel must end well before.
    EXPECT_TRUE(wait_until([&] { return proxy.observatory().active_tunnels() == 0; },
                           std::chrono::seconds(4)));
    EXPECT_TRUE(wait_until([&] { return backend_done.load(); }, std::chrono::seconds(4)));
}

TEST(TunnelTest, BackendThatClosedHasAllItSentDeliveredThoughItResetsTheClientsLastBytes)
{
    // The backend sends 4 MB and closes; the client, reading slowly, still writes to it, and
    // the closed backend answers that with a reset. What it sent before must all arrive.
    constexpr std::size_t sent = 4 * 1024 * 1024;
    origin backend([](origin_connection& c) {
        if (switch_protocols(c)) {
            net::write(c.stream, net::buffer(std::string(sent, 's')));
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    net::io_context ctx;
    std::string early;
    auto socket = open_tunnel(ctx, proxy.port(), &early);
    std::this_thread::sleep_for(std::chrono::milliseconds(200)); // the backend has closed
    std::size_t received = early.size();
    std::array<char, 16 * 1024> chunk{};
    boost::system::error_code ec;
    for (int reads = 0; reads < 100000 && !ec; ++reads) {
        if (reads == 2 || reads == 4) {
            net::write(socket, net::buffer(std::string_view("late message")), ec);
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        received += socket.read_some(net::buffer(chunk), ec);
    }
    EXPECT_EQ(received, sent) << ec.message();
}

TEST(TunnelTest, ClientResetEndsTheTunnelThoughTheBackendStaysOpen)
{
    // A backend that ignores its peer's end of stream: after a reset (unlike a half-close,
    // which the tunnel passes on) nothing more can come from the client or reach it.
    std::atomic<bool> release{false};
    origin backend([&](origin_connection& c) {
        if (!switch_protocols(c)) {
            return;
        }
        std::array<char, 4096> sink{};
        boost::system::error_code ec;
        while (!ec) {
            c.stream.read_some(net::buffer(sink), ec);
        }
        // The end of the client's stream arrived; stay open and silent (bounded) until the
        // test ends.
        for (int i = 0; i < 100 && !release; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    net::io_context ctx;
    auto socket = open_tunnel(ctx, proxy.port());
    net::write(socket, net::buffer(std::string_view("hello")));
    ASSERT_TRUE(wait_until([&] { return proxy.observatory().active_tunnels() == 1; }));
    reset(socket);
    EXPECT_TRUE(wait_until([&] { return proxy.observatory().active_tunnels() == 0; },
                           std::chrono::seconds(3)));
    release = true;
}

TEST(TunnelTest, H2cUpgradeIsDroppedAndForwardedAsHttp11)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    auto res = c.get("app.localhost", "/",
                     {{"Connection", "Upgrade, HTTP2-Settings"},
                      {"Upgrade", "h2c"},
                      {"HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"}});
    EXPECT_EQ(res.result_int(), 200);
    const auto seen = backend.seen_requests();
    ASSERT_EQ(seen.size(), 1U);
    EXPECT_EQ(seen[0].count(beast::http::field::upgrade), 0U);
    EXPECT_EQ(seen[0].count("HTTP2-Settings"), 0U);
}

TEST(TunnelTest, UpgradeOfferingH2cAndWebSocketIsTunnelledAsWebSocket)
{
    // A client may offer several protocols (RFC 9110 §7.8); portico cannot carry h2c, so the
    // backend is offered the rest, and the switch to it is tunnelled.
    std::mutex seen_mutex;
    std::vector<std::string> upgrades_seen;
    origin backend([&](origin_connection& c) {
        auto req = c.read_request();
        if (!req) {
            return;
        }
        {
            std::scoped_lock lock(seen_mutex);
            for (const auto& line : *req) {
                if (line.name() == beast::http::field::upgrade) {
                    upgrades_seen.emplace_back(line.value());
                }
            }
        }
        c.write_raw("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                    "Upgrade: websocket\r\n\r\n");
        std::array<char, 4> ping{};
        boost::system::error_code ec;
        net::read(c.stream, net::buffer(ping), ec);
        if (!ec) {
            net::write(c.stream, net::buffer(ping), ec);
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    net::io_context ctx;
    auto socket = connect_loopback(ctx, proxy.port());
    bounded_stream stream(socket);
    net::write(stream, net::buffer(std::string_view(
                           "GET /hmr HTTP/1.1\r\nHost: app.localhost\r\n"
                           "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c, websocket\r\n"
                           "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")));
    std::string received;
    const auto end = net::read_until(stream, net::dynamic_buffer(received), "\r\n\r\n");
    ASSERT_TRUE(received.starts_with("HTTP/1.1 101 ")) << received;
    received.erase(0, end);
    net::write(stream, net::buffer(std::string_view("ping")));
    boost::system::error_code ec;
    while (received.size() < 4 && !ec) {
        std::array<char, 64> bytes{};
        const auto n = stream.read_some(net::buffer(bytes), ec);
        received.append(bytes.data(), n);
    }
    EXPECT_EQ(received, "ping");
    std::scoped_lock lock(seen_mutex);
    EXPECT_EQ(upgrades_seen, std::vector<std::string>{"websocket"});
}

TEST(StreamingTest, ServerSentEventArrivesWhileResponseStaysOpen)
{
    std::atomic<bool> release{false};
    origin backend([&release](origin_connection& c) {
        if (!c.read_request()) {
            return;
        }
        c.write_raw("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    "Cache-Control: no-cache\r\n\r\n");
        c.write_raw("data: first\n\n");
        wait_until([&release] { return release.load(); }, std::chrono::seconds(5));
        c.write_raw("data: second\n\n");
    });
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("GET /events HTTP/1.1\r\nHost: app.localhost\r\nAccept: text/event-stream\r\n\r\n");
    beast::http::response_parser<beast::http::buffer_body> parser;
    beast::http::read_header(c.stream, c.buffer, parser);
    EXPECT_EQ(parser.get().result_int(), 200);
    std::string received;
    char chunk[256];
    while (received.find("data: first\n\n") == std::string::npos) {
        parser.get().body().data = chunk;
        parser.get().body().size = sizeof(chunk);
        boost::system::error_code ec;
        beast::http::read_some(c.stream, c.buffer, parser, ec);
        if (ec == beast::http::error::need_buffer) {
            ec = {};
        }
        ASSERT_FALSE(ec) << ec.message();
        received.append(chunk, sizeof(chunk) - parser.get().body().size);
    }
    EXPECT_FALSE(release.load()); // the backend is still holding the response open
    release = true;
}

TEST(StreamingTest, BackendDyingMidResponseClosesClientAndProxyGoesOn)
{
    origin backend([](origin_connection& c) {
        auto req = c.read_request();
        if (!req) {
            return;
        }
        if (req->target() == "/die") {
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial");
            return;
        }
        response res{beast::http::status::ok, 11};
        res.body() = "fine";
        res.prepare_payload();
        c.write(res);
    });
    proxy_harness proxy(route_to(backend.port()));
    {
        const auto raw =
            raw_exchange(proxy.port(), "GET /die HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
        EXPECT_TRUE(raw.starts_with("HTTP/1.1 200 ")) << raw;
        EXPECT_TRUE(raw.ends_with("partial")) << raw;
    }
    client c(proxy.port());
    auto res = c.get("app.localhost", "/ok");
    EXPECT_EQ(res.body(), "fine");
}

TEST(StreamingTest, BodyDelimitedByTheCloseEndsWithAResetWhenTheBackendCutsIt)
{
    // An HTTP/1.0 client reads a chunked body until the close: a FIN would say it is whole.
    origin backend([](origin_connection& c) {
        if (c.read_request()) {
            c.write_raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n");
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    net::io_context context;
    auto socket = connect_loopback(context, proxy.port());
    net::write(socket, net::buffer(std::string_view("GET / HTTP/1.0\r\nHost: app.localhost\r\n\r\n")));
    std::string received;
    boost::system::error_code ec;
    std::array<char, 4096> chunk{};
    for (int reads = 0; reads < 100 && !ec; ++reads) {
        const auto n = socket.read_some(net::buffer(chunk), ec);
        received.append(chunk.data(), n);
    }
    EXPECT_TRUE(received.starts_with("HTTP/1.0 200 ")) << received;
    EXPECT_TRUE(received.ends_with("partial")) << received;
    EXPECT_EQ(ec, net::error::connection_reset) << ec.message();
}

/// A client with a small receive buffer that has sent `request`: whatever it does not read
/// backs up into the proxy soon.
tcp::socket slow_reader(net::io_context& context, unsigned short port, std::string_view request)
{
    tcp::socket socket(context);
    socket.open(tcp::v4());
    socket.set_option(net::socket_base::receive_buffer_size(4096));
    socket.connect({net::ip::make_address("127.0.0.1"), port});
    net::write(socket, net::buffer(request));
    return socket;
}

TEST(StreamingTest, BodyCutByTheClientsWriteTimeoutEndsWithAReset)
{
    // The client stops reading a body delimited by the close: when timeouts.idle ends the
    // wait, a FIN would tell it the body was whole (decision 0019).
    origin backend([](origin_connection& c) {
        if (!c.read_request()) {
            return;
        }
        c.write_raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        const std::string chunk = "10000\r\n" + std::string(0x10000, 'x') + "\r\n";
        boost::system::error_code ec;
        for (int i = 0; i < 4096 && !ec; ++i) {
            net::write(c.stream, net::buffer(chunk), ec);
        }
    });
    proxy_harness proxy(route_to(backend.port(), "timeouts:\n  idle: 1s\n"));
    net::io_context context;
    auto socket = slow_reader(context, proxy.port(), "GET / HTTP/1.0\r\nHost: app.localhost\r\n\r\n");
    std::array<char, 4096> chunk{};
    boost::system::error_code ec;
    socket.read_some(net::buffer(chunk), ec);
    ASSERT_FALSE(ec);
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    std::size_t received = 0;
    for (int reads = 0; reads < 100000 && !ec; ++reads) {
        received += socket.read_some(net::buffer(chunk), ec);
    }
    EXPECT_EQ(ec, net::error::connection_reset) << ec.message() << " after " << received;
}

TEST(StreamingTest, WholeResponseStillQueuedForAPausedClientOutlivesTheIdleTimeout)
{
    // The response went out whole, into the socket's send queue; the client pauses (in a
    // debugger, say) past timeouts.idle. The keep-alive wait then ends with a FIN after
    // those bytes, not with a reset that would discard them.
    const std::string body(300000, 'r');
    origin backend([&body](origin_connection& c) {
        if (c.read_request()) {
            c.write_raw(fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                                    body.size(), body));
        }
    });
    proxy_harness proxy(route_to(backend.port(), "timeouts:\n  idle: 1s\n"));
    net::io_context context;
    auto socket = slow_reader(context, proxy.port(), "GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    std::string received;
    std::array<char, 4096> chunk{};
    boost::system::error_code ec;
    for (int reads = 0; reads < 100000 && !ec; ++reads) {
        const auto n = socket.read_some(net::buffer(chunk), ec);
        received.append(chunk.data(), n);
    }
    EXPECT_EQ(ec, net::error::eof) << ec.message();
    EXPECT_TRUE(received.ends_with("\r\n\r\n" + body)) << received.size();
}

TEST(StreamingTest, ClientLeavingMidLargeBodyLeavesProxyServing)
{
    // A large Content-Length body is spliced from socket to socket; the client's going away
    // must end that exchange (EPIPE or reset), not the process.
    origin backend([](origin_connection& c) {
        auto req = c.read_request();
        if (!req) {
            return;
        }
        if (req->target() == "/big") {
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n");
            const std::string chunk(256 * 1024, 'x');
            boost::system::error_code ec;
            for (int i = 0; i < 256 && !ec; ++i) {
                net::write(c.stream, net::buffer(chunk), ec);
            }
            return;
        }
        response res{beast::http::status::ok, 11};
        res.body() = "fine";
        res.prepare_payload();
        c.write(res);
    });
    proxy_harness proxy(route_to(backend.port()));
    {
        client c(proxy.port());
        c.write_raw("GET /big HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
        std::string some(512 * 1024, '\0');
        net::read(c.stream, net::buffer(some));
        EXPECT_TRUE(some.starts_with("HTTP/1.1 200 "));
    }
    client c(proxy.port());
    auto res = c.get("app.localhost", "/ok");
    EXPECT_EQ(res.body(), "fine");
}

TEST(StreamingTest, BackendClosingWithoutResponseGets502)
{
    origin backend([](origin_connection& c) { c.read_request(); });
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    auto res = c.get("app.localhost", "/");
    EXPECT_EQ(res.result_int(), 502);
    EXPECT_EQ(res["X-Portico-Error"], "upstream_protocol");
    EXPECT_NE(res.body().find("closed or broke the connection"), std::string::npos)
        << res.body();
}

/// What `ask` (given the proxy's port) gets through portico from a backend that answers a
/// request with `bytes`.
template <typename Ask>
auto through_backend_answering(const std::string& bytes, Ask ask)
{
    origin backend([&bytes](origin_connection& c) {
        if (c.read_request()) {
            c.write_raw(bytes);
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    return ask(proxy.port());
}

/// What a client gets through portico from a backend that answers a GET with `bytes`.
response answer_to_backend_bytes(const std::string& bytes)
{
    return through_backend_answering(bytes, [](unsigned short port) {
        client c(port);
        return c.get("app.localhost", "/");
    });
}

/// The responses a client gets for backend answers that each say 200 with the body "hi",
/// checked for that.
std::vector<response> relayed_hi(std::initializer_list<std::string_view> answers)
{
    std::vector<response> out;
    for (const auto bytes : answers) {
        out.push_back(answer_to_backend_bytes(std::string(bytes)));
        EXPECT_EQ(out.back().result_int(), 200) << bytes;
        EXPECT_EQ(out.back().body(), "hi") << bytes;
    }
    return out;
}

TEST(StreamingTest, MalformedResponseHeadsGet502AndNothingOfThem)
{
    // Heads the in-place reader refuses go to Beast's parser, which refuses them too: the
    // client gets portico's page, never the backend's bytes.
    for (const std::string head : {
             "NOT-HTTP 200 OK\r\nContent-Length: 5\r\n\r\nhello",
             "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
             "HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\nhello",
             "HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 5\r\n\r\nhello",
             "HTTP/1.1 2x0 OK\r\nContent-Length: 5\r\n\r\nhello",
         }) {
        const auto res = answer_to_backend_bytes(head);
        EXPECT_EQ(res.result_int(), 502) << head;
        EXPECT_EQ(res["X-Portico-Error"], "upstream_protocol") << head;
        EXPECT_EQ(res.body().find("hello"), std::string::npos) << head;
        // The backend sent a head, and kept the connection: the page must not say otherwise.
        EXPECT_NE(res.body().find("response head is not valid HTTP/1.1"), std::string::npos)
            << head << res.body();
        EXPECT_EQ(res.body().find("closed or broke"), std::string::npos) << head << res.body();
    }
}

TEST(StreamingTest, BackendSpeakingAnotherProtocolGets502AtOnce)
{
    // A route pointed at Redis or SSH: the server answers a line and keeps the connection,
    // and no response head would ever end.
    for (const std::string line : {"SSH-2.0-OpenSSH_9.6\r\n", "-ERR unknown command\r\n", "H"}) {
        origin backend([&line](origin_connection& c) {
            if (c.read_request()) {
                c.write_raw(line);
                if (line == "H") { // the first byte of a status line, the rest later
                    std::this_thread::sleep_for(std::chrono::milliseconds(200));
                    c.write_raw("TTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
                }
                never_answers(c);
            }
        });
        proxy_harness proxy(route_to(backend.port()));
        client c(proxy.port());
        const auto started = std::chrono::steady_clock::now();
        const auto res = c.get("app.localhost", "/", {{"Accept", "application/json"}});
        EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2)) << line;
        if (line == "H") {
            EXPECT_EQ(res.result_int(), 200); // a status line begun is waited for
            EXPECT_EQ(res.body(), "hi");
            continue;
        }
        EXPECT_EQ(res.result_int(), 502) << line;
        EXPECT_EQ(res["X-Portico-Error"], "upstream_protocol") << line;
        EXPECT_NE(res.body().find("not valid HTTP/1.1"), std::string::npos) << res.body();
    }
}

TEST(StreamingTest, StatusLineWithoutAReasonPhraseIsRelayed)
{
    // "HTTP/1.1 200" with no space after the code: small servers send it, nginx takes it.
    relayed_hi({
        "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi",
        "HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    });
}

/// What a client sending `request` raw gets through portico from a backend that answers it
/// with `bytes` and closes.
std::string raw_answer_to_backend_bytes(const std::string& request, const std::string& bytes)
{
    return through_backend_answering(bytes, [&request](unsigned short port) {
        return raw_exchange(port, request, std::chrono::seconds(3));
    });
}

TEST(StreamingTest, CodeUnknownToBeastWithoutAReasonPhraseIsNotGivenAFalseOne)
{
    // Beast writes such a head as "299 <unknown-status>"; a framed body's head is written
    // by portico, a re-framed one by Beast's serializer: neither may say that.
    for (const std::string body : {"Content-Length: 2\r\n\r\nhi",
                                   "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"}) {
        const auto raw = raw_answer_to_backend_bytes(
            "GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 299\r\n" + body);
        EXPECT_TRUE(raw.starts_with("HTTP/1.1 299 ")) << raw;
        EXPECT_EQ(raw.find("unknown"), std::string::npos) << raw;
    }
}

TEST(StreamingTest, EarlyHintsGoOnToAnHttp11ClientBeforeTheResponse)
{
    // 103 lets a browser start loading what the page will need while the backend works on
    // it (Rails' send_early_hints); HTTP/1.0 clients get no 1xx (RFC 9110 §15.2), and other
    // interim responses are this hop's. The status line needs no reason phrase, before or
    // after.
    const std::string backend_bytes = "HTTP/1.1 102 Processing\r\n\r\n"
                                      "HTTP/1.1 103\r\nLink: </app.css>; rel=preload\r\n"
                                      "Connection: close\r\nContent-Length: 5\r\n\r\n"
                                      "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi";
    const auto http11 = raw_answer_to_backend_bytes(
        "GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n", backend_bytes);
    EXPECT_TRUE(http11.starts_with("HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n"
                                   "Via: 1.1 portico\r\n\r\nHTTP/1.1 200 "))
        << http11;
    EXPECT_TRUE(http11.ends_with("\r\n\r\nhi")) << http11;
    EXPECT_EQ(http11.find(" 102 "), std::string::npos) << http11;
    const auto http10 =
        raw_answer_to_backend_bytes("GET / HTTP/1.0\r\nHost: app.localhost\r\n\r\n", backend_bytes);
    EXPECT_TRUE(http10.starts_with("HTTP/1.0 200 ")) << http10;
    EXPECT_TRUE(http10.ends_with("\r\n\r\nhi")) << http10;
}

TEST(StreamingTest, StatusLineWithoutAReasonPhraseIsRelayedForHeadAndUpgrade)
{
    const auto head = raw_answer_to_backend_bytes(
        "HEAD / HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n");
    EXPECT_TRUE(head.starts_with("HTTP/1.1 200 ")) << head;
    EXPECT_NE(head.find("Content-Length: 2\r\n"), std::string::npos) << head;

    const auto upgrade = raw_answer_to_backend_bytes(
        "GET /ws HTTP/1.1\r\nHost: app.localhost\r\nConnection: Upgrade\r\n"
        "Upgrade: websocket\r\n\r\n",
        "HTTP/1.1 101\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nthrough");
    EXPECT_TRUE(upgrade.starts_with("HTTP/1.1 101 ")) << upgrade;
    EXPECT_TRUE(upgrade.ends_with("\r\n\r\nthrough")) << upgrade;
}

TEST(StreamingTest, RepeatedAgreeingContentLengthsReachTheClientAsOne)
{
    // A proxy must send one (RFC 9110 §8.6): a strict client refuses the repeat.
    for (const auto& res : relayed_hi({
             "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
             "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nhi",
         })) {
        EXPECT_EQ(res.count(beast::http::field::content_length), 1U) << res;
        EXPECT_EQ(res[beast::http::field::content_length], "2") << res;
    }
}

TEST(StreamingTest, ResponseInATransferCodingPorticoDoesNotDecodeGets502)
{
    // Passed on re-framed, the body would lose the coding its head named: the client would
    // take gzip bytes for the content.
    for (const std::string head : {
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         }) {
        const auto res = answer_to_backend_bytes(head);
        EXPECT_EQ(res.result_int(), 502) << head;
        EXPECT_EQ(res["X-Portico-Error"], "upstream_protocol") << head;
        EXPECT_EQ(res.body().find("hello"), std::string::npos) << head;
        EXPECT_NE(res.body().find("portico does not decode"), std::string::npos) << res.body();
    }
}

TEST(StreamingTest, ResponseHeadWithBareLineFeedsIsAnsweredAtOnce)
{
    // A head ended by LF LF is a complete head: it is refused (or read) now, not waited on
    // for a CRLF CRLF that a backend keeping its connection never sends.
    origin backend([](origin_connection& c) {
        if (c.read_request()) {
            c.write_raw("HTTP/1.1 200 OK\nContent-Length: 5\n\nhello");
            c.read_request(); // keeps the connection until the proxy closes it
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    const auto start = std::chrono::steady_clock::now();
    const auto raw = raw_exchange(proxy.port(),
                                  "GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n",
                                  std::chrono::seconds(3));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    EXPECT_TRUE(raw.starts_with("HTTP/1.1 502 ")) << raw;
    EXPECT_NE(raw.find("X-Portico-Error: upstream_protocol"), std::string::npos) << raw;
}

/// The statuses the proxy recorded for requests to `target`, oldest first.
std::vector<unsigned> statuses_of(proxy_harness& proxy, std::string_view target)
{
    std::vector<unsigned> out;
    for (const auto& sample : proxy.observatory().recent()) {
        if (sample.target == target) {
            out.push_back(sample.status);
        }
    }
    return out;
}

/**
 * Sends `count` copies of `piece` on `fd` from a thread of its own, waiting `pause` before
 * each; stops at the first send that fails (the proxy closed the connection, or the
 * socket's 5 s bound passed).
 */
std::thread send_pieces(int fd, std::string piece, int count,
                        std::chrono::milliseconds pause = std::chrono::milliseconds(0))
{
    return std::thread([fd, piece = std::move(piece), count, pause] {
        for (int i = 0; i < count; ++i) {
            std::this_thread::sleep_for(pause);
            if (::send(fd, piece.data(), piece.size(), MSG_NOSIGNAL) < 0) {
                return;
            }
        }
    });
}

/**
 * Sends `PUT target` with a body of `pieces` times 64 KiB of `fill`, streamed from a thread
 * of its own while the response is read; `after_response` runs before that thread is
 * joined (to let a backend that keeps the body unread go). An empty response when the
 * read failed.
 */
response put_in_pieces(client& c, std::string_view target, int pieces, char fill,
                       const std::function<void()>& after_response = {})
{
    c.write_raw(fmt::format("PUT {} HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: {}\r\n\r\n",
                            target, std::size_t{64 * 1024} * static_cast<std::size_t>(pieces)));
    auto uploader = send_pieces(c.socket.native_handle(), std::string(64 * 1024, fill), pieces);
    response res;
    EXPECT_NO_THROW(res = c.read_response());
    if (after_response) {
        after_response();
    }
    uploader.join();
    return res;
}

using streamed_request = beast::http::request_parser<beast::http::buffer_body>;

/**
 * A backend that sends `head` as soon as a request's head has come, then runs `then`, which
 * may read the body through the parser (`read_body_in_pieces`) or leave it unread.
 */
origin_handler answers_at_once(std::string head,
                               std::function<void(origin_connection&, streamed_request&)> then)
{
    return [head = std::move(head), then = std::move(then)](origin_connection& c) {
        streamed_request parser;
        if (read_streamed_head(c, parser)) {
            c.write_raw(head);
            then(c, parser);
        }
    };
}

const std::string chunked_ok = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

/// The last chunk of a chunked response carrying `line`.
std::string last_chunk(const std::string& line)
{
    return fmt::format("{:x}\r\n{}\r\n0\r\n\r\n", line.size(), line);
}

/**
 * A backend that takes a request's head, sends `first` at once, and only then (after
 * `pause`) reads the body; it ends with `rest("received N")`, or `rest` of the read's error.
 */
origin_handler sends_before_reading_body(std::string first,
                                         std::function<std::string(const std::string&)> rest,
                                         std::chrono::milliseconds pause = {})
{
    return [first = std::move(first), rest = std::move(rest), pause](origin_connection& c) {
        beast::http::request_parser<beast::http::string_body> parser;
        parser.body_limit(16 * 1024 * 1024);
        boost::system::error_code ec;
        beast::http::read_header(c.stream, c.buffer, parser, ec);
        if (ec) {
            return;
        }
        c.write_raw(first);
        std::this_thread::sleep_for(pause);
        beast::http::read(c.stream, c.buffer, parser, ec);
        c.write_raw(rest(ec ? ec.message()
                            : "received " + std::to_string(parser.get().body().size())));
    };
}

/**
 * A backend that takes a request's head, sends `answer` (nothing when empty), and then
 * neither reads the body nor closes until `finished` is set (or `limit` passes).
 */
origin_handler stalls_after_head(std::string answer, std::atomic<bool>& finished,
                                 std::chrono::seconds limit)
{
    return [answer = std::move(answer), &finished, limit](origin_connection& c) {
        std::string head;
        boost::system::error_code ec;
        net::read_until(c.stream, net::dynamic_buffer(head), "\r\n\r\n", ec);
        if (ec) {
            return;
        }
        if (!answer.empty()) {
            c.write_raw(answer);
        }
        wait_until([&finished] { return finished.load(); }, limit);
    };
}

TEST(StreamingTest, BackendAnsweringAndNotReadingTheUploadIsRelayedWhole)
{
    // Dev servers refuse an upload from its head (413, 401) and stop reading it. Their
    // answer must reach the client once the backend has stopped taking the body (about a
    // second), not after timeouts.idle with a 504 in its place; and whole, although the
    // client goes on sending for a while after the proxy stopped forwarding.
    std::atomic<bool> finished{false};
    const std::string answer(300000, 'n');
    // The connection stays open and the body unread.
    origin backend(stalls_after_head(
        fmt::format("HTTP/1.1 413 Payload Too Large\r\nContent-Length: {}\r\n\r\n{}",
                    answer.size(), answer),
        finished, std::chrono::seconds(10)));
    proxy_harness proxy("timeouts: { idle: 60s }\n" + route_to(backend.port()));
    for (const bool chunked : {false, true}) {
        client c(proxy.port());
        const auto started = std::chrono::steady_clock::now();
        c.write_raw(fmt::format("POST /upload HTTP/1.1\r\nHost: app.localhost\r\n{}\r\n",
                                chunked ? "Transfer-Encoding: chunked\r\n"
                                        : "Content-Length: 16777216\r\n"));
        // 16 MiB, more than the sockets on the way hold, sent while the answer is awaited.
        const std::string piece(64 * 1024, 'x');
        auto uploader = send_pieces(c.socket.native_handle(),
                                    chunked ? "10000\r\n" + piece + "\r\n" : piece, 256);
        response res;
        EXPECT_NO_THROW(res = c.read_response()) << "chunked " << chunked;
        const auto waited = std::chrono::steady_clock::now() - started;
        uploader.join();
        EXPECT_EQ(res.result_int(), 413) << "chunked " << chunked;
        EXPECT_EQ(res.body().size(), answer.size()) << "chunked " << chunked;
        EXPECT_LT(waited, std::chrono::seconds(5)) << "chunked " << chunked;
        // The body was not all read: the connection is not kept for another request.
        EXPECT_TRUE(c.is_closed_by_peer());
    }
    finished = true;
    EXPECT_TRUE(wait_until([&] { return statuses_of(proxy, "/upload").size() == 2; }));
    EXPECT_EQ(statuses_of(proxy, "/upload"), (std::vector<unsigned>{413, 413}));
}

TEST(StreamingTest, BackendSendingItsHeadBeforeReadingTheUploadGetsTheWholeBody)
{
    // A handler may send its response head at once and read the body after (a streaming
    // upload, Node's flushHeaders): the body must go on to the end, and the rest of the
    // response follow it, even though the client sends its body slowly.
    static constexpr std::size_t body_size = 1024 * 1024;
    origin backend(sends_before_reading_body(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", last_chunk));
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    c.write_raw(fmt::format("PUT /stream HTTP/1.1\r\nHost: app.localhost\r\n"
                            "Content-Length: {}\r\n\r\n",
                            body_size));
    // In 16 pieces 150 ms apart: the proxy waits on the client far longer than the backend
    // takes to read.
    auto uploader = send_pieces(c.socket.native_handle(), std::string(body_size / 16, 'p'), 16,
                                std::chrono::milliseconds(150));
    response res;
    EXPECT_NO_THROW(res = c.read_response());
    uploader.join();
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "received " + std::to_string(body_size));
}

TEST(StreamingTest, BackendPausingAfterItsHeadThenReadingGetsTheWholeBody)
{
    // A pause of more than one check of the backend (a second) but less than two does not
    // cut the body: the backend is taken to have stopped only after two checks in a row.
    static constexpr std::size_t body_size = 16 * 1024 * 1024;
    origin backend(sends_before_reading_body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                             last_chunk, std::chrono::milliseconds(1800)));
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    // The response comes only once the backend has read all 16 MiB after its pause: the
    // client's one read waits for the pause and the whole transfer, which a slowed
    // (sanitized, loaded, traced) run can take past the default 5 s bound.
    bound_socket_waits(c.socket.native_handle(), std::chrono::seconds(30));
    const auto res = put_in_pieces(c, "/paused", body_size / 65536, 'p');
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "received " + std::to_string(body_size));
}

TEST(StreamingTest, BackendEchoingALargeUploadAsItReadsItIsRelayedWhole)
{
    // Node's req.pipe(res): the answer streams back while the body still comes. Relayed
    // only after the body, the echo fills the sockets on the way, the backend blocks in its
    // write and stops reading, and neither side moves again (decision 0014).
    origin backend(echo_body);
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    constexpr int pieces = 512; // 32 MiB, far more than the sockets on the way hold
    const auto res = put_in_pieces(c, "/echo", pieces, 'e');
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body().size(), std::size_t{pieces} * 64 * 1024);
    EXPECT_EQ(res.body().find_first_not_of('e'), std::string::npos);
    // The body sent beside the answer counts in the statistics as any other.
    EXPECT_TRUE(wait_until([&] { return proxy.observatory().totals().bytes_in > 0; }));
    EXPECT_EQ(proxy.observatory().totals().bytes_in, std::uint64_t{pieces} * 64 * 1024);
}

TEST(StreamingTest, EarlyHeadThenALongPauseAfterTheWholeUploadIsRelayedWhole)
{
    // Express's res.flushHeaders() on arrival, then the work on the uploaded file: the
    // head comes before the body is all sent, and the rest of the answer long after it
    // (longer than timeouts.idle). Once the body is all sent the answer waits as any
    // other response does (timeouts.upstream, 0 here: as long as it takes).
    constexpr std::size_t body_size = 4 * 1024 * 1024;
    origin backend(answers_at_once(chunked_ok, [](origin_connection& c, streamed_request& parser) {
        std::size_t taken = 0;
        if (!read_body_in_pieces(c, parser, 64 * 1024,
                                 [&taken](std::string_view piece) { taken += piece.size(); })) {
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        const auto text = "processed " + std::to_string(taken);
        c.write_raw(fmt::format("{:x}\r\n{}\r\n0\r\n\r\n", text.size(), text));
    }));
    proxy_harness proxy("timeouts: { idle: 500ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    bound_socket_waits(c.socket.native_handle(), std::chrono::seconds(10));
    const auto res = put_in_pieces(c, "/process", body_size / 65536, 'u');
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "processed " + std::to_string(body_size));
}

TEST(StreamingTest, AnswerStreamingWhileTheBackendTakesNoneOfTheUploadIsNotCut)
{
    // Progress events from a handler that has not begun to read the upload (or an echo the
    // client reads slowly, which blocks the backend and with it its reading): the body's
    // write waits longer than timeouts.idle, but the answer's bytes keep coming, so the
    // exchange is alive and goes on.
    std::atomic<bool> finished{false};
    origin backend(
        answers_at_once(chunked_ok, [&finished](origin_connection& c, streamed_request&) {
            for (int i = 0; i < 10; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
                c.write_raw(fmt::format("6\r\ntick{}\n\r\n", i));
            }
            c.write_raw("0\r\n\r\n");
            wait_until([&finished] { return finished.load(); }); // the body stays unread
        }));
    proxy_harness proxy("timeouts: { idle: 500ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    const auto res = put_in_pieces(c, "/progress", 1024, 'p', [&finished] { finished = true; });
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "tick0\ntick1\ntick2\ntick3\ntick4\ntick5\ntick6\ntick7\ntick8\ntick9\n");
    EXPECT_TRUE(wait_until([&] { return !statuses_of(proxy, "/progress").empty(); }));
    EXPECT_TRUE(proxy.observatory().totals().routes.at("app.localhost").upstream_errors.empty());
}

TEST(StreamingTest, ClientSilentOnItsUploadButReadingAFramedAnswerIsNotCut)
{
    // The client has stopped sending its upload but reads the answer, which trickles on
    // for longer than timeouts.idle: the answer's writes keep the client's connection, also
    // when the answer goes from socket to socket through a pipe (a Content-Length over
    // 64 KiB).
    static constexpr std::size_t answer_size = 200 * 1024;
    std::atomic<bool> finished{false};
    const auto head = fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", answer_size);
    origin backend(answers_at_once(head, [&finished](origin_connection& c, streamed_request&) {
        c.write_raw(std::string(100 * 1024, 'a'));
        for (int i = 0; i < 30; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            c.write_raw(std::string(1024, 'b'));
        }
        c.write_raw(std::string(answer_size - 130 * 1024, 'c'));
        wait_until([&finished] { return finished.load(); }); // the body stays unread
    }));
    proxy_harness proxy("timeouts: { idle: 500ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("PUT /silent HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 5000000\r\n\r\n" +
                std::string(200000, 's'));
    response res;
    EXPECT_NO_THROW(res = c.read_response());
    finished = true;
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body().size(), answer_size);
}

TEST(StreamingTest, ClientGoingQuietMidUploadWhileTheAnswerWaitsForTheBodyIsClosed)
{
    // The backend sent its head at once and answers the rest only after the whole body,
    // which the client stops sending: neither side moves, and the deadline of the client's
    // upload ends the exchange (the backend's connection is shut, the client's closed).
    // The backend, waiting for the body, is not blamed: its connection had no deadline
    // running of its own that could pass first (a race once, hence three rounds).
    std::atomic<int> let_go{0};
    origin backend(
        answers_at_once(chunked_ok, [&let_go](origin_connection& c, streamed_request& parser) {
            read_body_in_pieces(c, parser, 64 * 1024, [](std::string_view) {});
            ++let_go;
        }));
    proxy_harness proxy("timeouts: { idle: 400ms }\n" + route_to(backend.port()));
    for (int round = 1; round <= 3; ++round) {
        client c(proxy.port());
        c.write_raw(
            "POST /quiet HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 1000000\r\n\r\n" +
            std::string(100000, 'q'));
        const auto started = std::chrono::steady_clock::now();
        const auto received = c.read_until_closed();
        EXPECT_TRUE(received.starts_with("HTTP/1.1 200 OK\r\n")) << received;
        EXPECT_EQ(received.find("0\r\n\r\n"), std::string::npos) << received;
        EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(4));
        EXPECT_TRUE(wait_until([&] { return let_go.load() == round; }));
        ASSERT_TRUE(
            wait_until([&] { return statuses_of(proxy, "/quiet").size() == std::size_t(round); }));
        EXPECT_TRUE(proxy.observatory().totals().routes.at("app.localhost").upstream_errors.empty())
            << "round " << round;
    }
}

TEST(StreamingTest, LargeFramedAnswerWhileTheBackendTakesNoneOfTheUploadIsNotCut)
{
    // As AnswerStreamingWhileTheBackendTakesNoneOfTheUploadIsNotCut, for an answer with a
    // Content-Length, which goes from socket to socket through a pipe: the backend always
    // has bytes ready, and the client takes them slowly, for longer than timeouts.idle.
    // More than the socket buffers on the way hold (portico's send buffer alone grows to
    // 4 MiB), so that the pace is the client's.
    static constexpr std::size_t answer_size = 16 * 1024 * 1024;
    std::atomic<bool> finished{false};
    const auto head = fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", answer_size);
    origin backend(answers_at_once(head, [&finished](origin_connection& c, streamed_request&) {
        c.write_raw(std::string(answer_size, 'a'));
        wait_until([&finished] { return finished.load(); }); // the body stays unread
    }));
    proxy_harness proxy("timeouts: { idle: 500ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    const int small_buffer = 64 * 1024;
    ::setsockopt(c.socket.native_handle(), SOL_SOCKET, SO_RCVBUF, &small_buffer,
                 sizeof small_buffer);
    c.write_raw("PUT /framed HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 67108864\r\n\r\n");
    auto uploader = send_pieces(c.socket.native_handle(), std::string(64 * 1024, 'p'), 1024);
    // Read at about 8 MB/s: two seconds for the answer.
    std::string received;
    std::vector<char> chunk(64 * 1024);
    boost::system::error_code ec;
    const auto started = std::chrono::steady_clock::now();
    const auto whole = [&received] {
        const auto end = received.find("\r\n\r\n");
        return end != std::string::npos && received.size() >= end + 4 + answer_size;
    };
    while (!ec && !whole() &&
           std::chrono::steady_clock::now() - started < std::chrono::seconds(15)) {
        received.append(chunk.data(), c.stream.read_some(net::buffer(chunk), ec));
        std::this_thread::sleep_for(std::chrono::milliseconds(8));
    }
    finished = true;
    uploader.join();
    EXPECT_TRUE(received.starts_with("HTTP/1.1 200 OK\r\n")) << received.substr(0, 100);
    const auto head_end = received.find("\r\n\r\n");
    ASSERT_NE(head_end, std::string::npos);
    EXPECT_EQ(received.size() - head_end - 4, answer_size) << ec.message();
    EXPECT_TRUE(proxy.observatory().totals().routes.at("app.localhost").upstream_errors.empty());
}

TEST(StreamingTest, ResponseOfABackendWhoseBodyWasCutEndsAtTheIdleTimeout)
{
    // A backend that answered, stopped reading, and then neither sends the rest of its
    // response nor closes (the end of the body it was shown changes nothing): after the cut,
    // each read of its response waits at most timeouts.idle, so the exchange ends.
    std::atomic<bool> finished{false};
    origin backend(stalls_after_head(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n", finished,
        std::chrono::seconds(20)));
    proxy_harness proxy("timeouts: { idle: 4s }\n" + route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("PUT /cut HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 16777216\r\n\r\n");
    auto uploader = send_pieces(c.socket.native_handle(), std::string(64 * 1024, 'c'), 256);
    std::string received;
    std::array<char, 4096> chunk{};
    const auto started = std::chrono::steady_clock::now();
    boost::system::error_code ec;
    while (!ec && std::chrono::steady_clock::now() - started < std::chrono::seconds(15)) {
        const auto n = c.stream.read_some(net::buffer(chunk), ec);
        received.append(chunk.data(), n);
    }
    uploader.join();
    finished = true;
    // The head and the chunk that came went out; then the connection closed, unfinished.
    EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset) << ec.message();
    EXPECT_NE(received.find("5\r\nfirst\r\n"), std::string::npos) << received;
    EXPECT_EQ(received.find("0\r\n\r\n"), std::string::npos) << received;
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(12));
}

TEST(StreamingTest, ChunkedUploadOverTheLimitAfterAnEarlyAnswerEndsTheConnection)
{
    // limits.body_bytes: a chunked body over it gets 413 when no response has started to the
    // client, and a closed connection otherwise (SPEC); an answer the backend sent early is
    // relayed at once, so it has started.
    origin backend(sends_before_reading_body("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                                             [](const std::string&) { return std::string(); }));
    proxy_harness proxy("limits: { body_bytes: 100000 }\n" + route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("POST /big HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n\r\n");
    auto uploader =
        send_pieces(c.socket.native_handle(), "4000\r\n" + std::string(0x4000, 'l') + "\r\n", 16,
                    std::chrono::milliseconds(20));
    response res;
    EXPECT_NO_THROW(res = c.read_response());
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "ok");
    EXPECT_TRUE(c.is_closed_by_peer());
    uploader.join();
}

TEST(StreamingTest, BackendClosingMidUploadGets502AtOnce)
{
    // The backend takes the head, then closes (a reset: the body it did not read is still
    // on its socket) while the client is between two pieces of its body. The wait for an
    // early answer reads that close; the client gets the 502 page then, not never.
    origin backend([](origin_connection& c) {
        std::string head;
        boost::system::error_code ec;
        net::read_until(c.stream, net::dynamic_buffer(head), "\r\n\r\n", ec);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    });
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    const auto started = std::chrono::steady_clock::now();
    c.write_raw("POST /upload HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 100000\r\n\r\n" +
                std::string(20000, 'a'));
    auto uploader = send_pieces(c.socket.native_handle(), std::string(10000, 'b'), 8,
                                std::chrono::milliseconds(100));
    response res;
    EXPECT_NO_THROW(res = c.read_response());
    const auto waited = std::chrono::steady_clock::now() - started;
    uploader.join();
    EXPECT_EQ(res.result_int(), 502);
    EXPECT_LT(waited, std::chrono::seconds(3));
    EXPECT_TRUE(wait_until([&] { return statuses_of(proxy, "/upload").size() == 1; }));
}

TEST(StreamingTest, InterimResponsesBeforeTheBodyDoNotCutTheUploadShort)
{
    // A backend may send 100 Continue or 103 Early Hints as soon as it has the head, and then
    // read the body: those are not its answer, and the whole body must still reach it.
    for (const std::string interim : {"HTTP/1.1 100 Continue\r\n\r\n",
                                      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"}) {
        origin backend(sends_before_reading_body(interim, [](const std::string& line) {
            return fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}", line.size(),
                               line);
        }));
        proxy_harness proxy(route_to(backend.port()));
        client c(proxy.port());
        request req{beast::http::verb::post, "/upload", 11};
        req.set(beast::http::field::host, "app.localhost");
        req.body() = std::string(4 * 1024 * 1024, 'u');
        req.prepare_payload();
        auto res = c.send(req);
        // A 103 read while the body goes is dropped; one still unread when the body is out
        // goes on to the client ahead of the answer.
        if (res.result_int() == 103) {
            res = c.read_response();
        }
        EXPECT_EQ(res.result_int(), 200) << interim;
        EXPECT_EQ(res.body(), "received " + std::to_string(4 * 1024 * 1024)) << interim;
    }
}

TEST(StreamingTest, SlowUploadOutlastsTheIdleTimeout)
{
    // `timeouts.idle` bounds each wait for the client's next bytes, not the whole upload:
    // here the body takes three times as long as the timeout, each piece well within it.
    origin backend([](origin_connection& c) {
        while (auto req = c.read_request()) {
            response res{beast::http::status::ok, 11};
            res.body() = std::to_string(req->body().size());
            res.prepare_payload();
            c.write(res);
        }
    });
    proxy_harness proxy("timeouts: { idle: 400ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("POST /slow HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 2000\r\n\r\n");
    for (int i = 0; i < 8; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        c.write_raw(std::string(250, 'b'));
    }
    auto res = c.read_response();
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "2000");
    // And the connection goes on.
    EXPECT_EQ(c.get("app.localhost", "/next").result_int(), 200);
}

TEST(StreamingTest, ClientGoingQuietMidUploadIsClosedAndLogged408)
{
    std::atomic<int> truncated{0};
    origin backend([&truncated](origin_connection& c) {
        if (!c.read_request()) {
            ++truncated;
        }
    });
    proxy_harness proxy("timeouts: { idle: 300ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("POST /quiet HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 1000\r\n\r\n"
                "0123456789");
    EXPECT_TRUE(c.is_closed_by_peer());
    EXPECT_TRUE(wait_until([&] { return !statuses_of(proxy, "/quiet").empty(); }));
    EXPECT_EQ(statuses_of(proxy, "/quiet"), std::vector<unsigned>{408});
    EXPECT_TRUE(wait_until([&] { return truncated.load() == 1; }));
}

TEST(StreamingTest, ChunkLineEndingInABareLfArrivingLateGets400AtOnce)
{
    // Beast waits for a CRLF that a bare LF never gives; the client, done sending, must not
    // wait for the idle timeout to learn that its body was refused.
    origin backend([](origin_connection& c) { never_answers(c); });
    proxy_harness proxy("timeouts: { idle: 5s }\n" + route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("POST /late HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3\r\nabc\r\n");
    EXPECT_TRUE(wait_until([&] { return backend.connections() == 1; }));
    const auto sent = std::chrono::steady_clock::now();
    c.write_raw("0\r\n\n");
    const auto raw = c.read_until_closed();
    EXPECT_LT(std::chrono::steady_clock::now() - sent, std::chrono::seconds(2));
    EXPECT_TRUE(raw.starts_with("HTTP/1.1 400 ")) << raw;
    EXPECT_NE(raw.find("X-Portico-Error: bad_request"), std::string::npos) << raw;
}

TEST(StreamingTest, ResponseChunkLineEndingInABareLfCutsTheClientAtOnce)
{
    // A response has no deadline by default: without the check the client would wait for
    // its end for as long as the backend keeps the connection.
    origin backend([](origin_connection& c) {
        if (c.read_request()) {
            c.write_raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n0\r\n\n");
            never_answers(c);
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    const auto sent = std::chrono::steady_clock::now();
    c.write_raw("GET /bare HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    const auto raw = c.read_until_closed();
    EXPECT_LT(std::chrono::steady_clock::now() - sent, std::chrono::seconds(2));
    EXPECT_TRUE(raw.starts_with("HTTP/1.1 200 ")) << raw;
    EXPECT_NE(raw.find("hello"), std::string::npos) << raw;
    EXPECT_FALSE(raw.ends_with("0\r\n\r\n")) << raw; // cut, not ended
}

TEST(StreamingTest, EarlyAnswerThatIsNoValidResponseStopsTheBodyAndTheConnectionCloses)
{
    // The 502 page's lingering close must be the only reader of the client's connection,
    // bounded as after any error page: the body is not sent on beside it.
    std::atomic<std::size_t> taken{0};
    origin backend([&taken](origin_connection& c) {
        beast::http::request_parser<beast::http::buffer_body> parser;
        if (read_streamed_head(c, parser)) {
            c.write_raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
            read_body_in_pieces(c, parser, 64 * 1024,
                                [&taken](std::string_view piece) { taken += piece.size(); });
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("POST /bad HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 100000000\r\n\r\n" +
                std::string(64 * 1024, 'b'));
    const auto res = c.read_response();
    EXPECT_EQ(res.result_int(), 502);
    EXPECT_EQ(res["X-Portico-Error"], "upstream_protocol");
    auto trickle = send_pieces(c.socket.native_handle(), std::string(1000, 'b'), 200,
                               std::chrono::milliseconds(20));
    trickle.join();
    // At most what came with the head reached the backend; the trickle after the page was
    // read and dropped by the lingering close, not sent on.
    EXPECT_TRUE(wait_until([&] { return backend.connections() == 1; }));
    EXPECT_LE(taken.load(), std::size_t{64 * 1024});
}

TEST(StreamingTest, UploadOverTheLimitCuttingAnEchoIsNotCountedAgainstTheBackend)
{
    // The echo is under way when the body passes limits.body_bytes: the backend's
    // connection is shut, which cuts its answer, and the request is the client's failure
    // (body_too_large), not an upstream_aborted of the backend's.
    origin backend(echo_body);
    proxy_harness proxy("limits: { body_bytes: 100000 }\n" + route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("POST /big HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n\r\n");
    auto uploader =
        send_pieces(c.socket.native_handle(), "4000\r\n" + std::string(0x4000, 'l') + "\r\n", 16,
                    std::chrono::milliseconds(20));
    const auto received = c.read_until_closed();
    uploader.join();
    EXPECT_TRUE(received.starts_with("HTTP/1.1 200 OK\r\n")) << received.substr(0, 200);
    EXPECT_EQ(received.find("\r\n0\r\n\r\n"), std::string::npos);
    ASSERT_TRUE(wait_until([&proxy] {
        const auto totals = proxy.observatory().totals();
        const auto route = totals.routes.find("app.localhost");
        return route != totals.routes.end() && route->second.errors == 1;
    }));
    const auto totals = proxy.observatory().totals();
    EXPECT_TRUE(totals.routes.at("app.localhost").upstream_errors.empty());
}

TEST(StreamingTest, ClientGoingQuietMidUploadAfterAnEarlyAnswerGetsItAndIsClosed)
{
    // The backend answers from the head and goes on reading: the answer is relayed at once,
    // and the client, silent, is closed at the deadline.
    origin backend([](origin_connection& c) {
        beast::http::request_parser<beast::http::string_body> head;
        boost::system::error_code ec;
        beast::http::read_header(c.stream, c.buffer, head, ec);
        if (!ec) {
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly");
            never_answers(c); // reads on, taking whatever of the body comes
        }
    });
    proxy_harness proxy("timeouts: { idle: 300ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("POST /quiet HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 1000\r\n\r\n"
                "0123456789");
    const auto res = c.read_response();
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "early");
    EXPECT_TRUE(c.is_closed_by_peer());
    EXPECT_TRUE(wait_until([&] { return !statuses_of(proxy, "/quiet").empty(); }));
    EXPECT_EQ(statuses_of(proxy, "/quiet"), std::vector<unsigned>{200});
}

TEST(StreamingTest, BackendNotReadingTheUploadNorAnsweringGets504NamingTheIdleTimeout)
{
    std::atomic<bool> finished{false};
    origin backend(stalls_after_head("", finished, std::chrono::seconds(10)));
    proxy_harness proxy("timeouts: { idle: 300ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("POST /upload HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 16777216\r\n"
                "Accept: application/json\r\n\r\n");
    auto uploader = send_pieces(c.socket.native_handle(), std::string(64 * 1024, 'x'), 256);
    response res;
    EXPECT_NO_THROW(res = c.read_response());
    uploader.join();
    finished = true;
    EXPECT_EQ(res.result_int(), 504);
    EXPECT_EQ(res["X-Portico-Error"], "upstream_timeout");
    EXPECT_NE(res.body().find("timeouts.idle"), std::string::npos) << res.body();
    EXPECT_EQ(res.body().find("timeouts.upstream"), std::string::npos) << res.body();
}

/**
 * A client sends GET `target` and leaves once the backend has the connection: the backend
 * must be let go (`released` set by its handler) within about a second, and the request
 * logged 499.
 */
void leave_while_waiting(proxy_harness& proxy, origin& backend, std::string_view target,
                         const std::atomic<bool>& released)
{
    {
        client c(proxy.port());
        c.write_raw(fmt::format("GET {} HTTP/1.1\r\nHost: app.localhost\r\n\r\n", target));
        ASSERT_TRUE(wait_until([&backend] { return backend.connections() == 1; }));
    } // the client closes its connection here
    EXPECT_TRUE(wait_until([&released] { return released.load(); }, std::chrono::seconds(4)));
    EXPECT_TRUE(wait_until([&proxy] {
        const auto recent = proxy.observatory().recent();
        return !recent.empty() && recent.front().status == 499;
    }));
}

TEST(StreamingTest, ClientLeavingWhileItsRequestWaitsLetsTheBackendGo)
{
    // With timeouts.upstream 0 a backend may take forever; a client that gives up (a tab
    // closed on a long poll) must not hold the backend connection meanwhile. It is let go
    // within about a second and the request logged 499, as nginx does.
    std::atomic<bool> released{false};
    origin backend([&released](origin_connection& c) {
        if (!c.read_request()) {
            return;
        }
        std::array<char, 64> chunk{};
        boost::system::error_code ec;
        c.stream.read_some(net::buffer(chunk), ec); // until portico closes (or 10 s)
        released = ec == net::error::eof || ec == net::error::connection_reset;
    });
    proxy_harness proxy(route_to(backend.port()));
    leave_while_waiting(proxy, backend, "/long-poll", released);
    // A client that stays is not affected, however long its backend takes.
    origin slow([](origin_connection& c) {
        if (c.read_request()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1500));
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate");
        }
    });
    proxy_harness second(route_to(slow.port()));
    client stays(second.port());
    const auto res = stays.get("app.localhost", "/slow");
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "late");
}

TEST(StreamingTest, ClientLeavingWhileTheBackendsHandshakeWaitsIsLogged499)
{
    // The backend takes the TCP connection and never answers the ClientHello: the client
    // gives up long before timeouts.connect. It is let go as one that leaves while its
    // response is waited for, and the backend is not marked down for it.
    std::atomic<bool> released{false};
    origin backend([&released](origin_connection& c) {
        std::array<char, 4096> chunk{};
        boost::system::error_code ec;
        while (!ec) {
            c.stream.read_some(net::buffer(chunk), ec); // the ClientHello, then the close
        }
        released = ec == net::error::eof || ec == net::error::connection_reset;
    });
    proxy_harness proxy(fmt::format("timeouts: {{ connect: 20s }}\nroutes:\n  - host: "
                                    "app.localhost\n    to: https://127.0.0.1:{}\n",
                                    backend.port()));
    leave_while_waiting(proxy, backend, "/hangs", released);
    EXPECT_NE(proxy.observatory().backend("https://127.0.0.1:" + std::to_string(backend.port())),
              admin::backend_state::down);
}

TEST(StreamingTest, SlowBackendGets504WithUpstreamTimeout)
{
    origin backend(never_answers);
    proxy_harness proxy("timeouts: { upstream: 200ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    auto res = c.get("app.localhost", "/slow");
    EXPECT_EQ(res.result_int(), 504);
    EXPECT_EQ(res["X-Portico-Error"], "upstream_timeout");
}

TEST(RewriteTest, StripPrefixBasePathHeaderRulesAndHostHeader)
{
    origin backend;
    proxy_harness proxy(fmt::format(
        "routes:\n"
        "  - host: app.localhost\n"
        "    path: /api\n"
        "    strip_prefix: true\n"
        "    to: http://127.0.0.1:{}/v1\n"
        "    host_header: backend\n"
        "    headers:\n"
        "      request: {{ set: {{ X-Env: dev }}, remove: [Cookie] }}\n"
        "      response: {{ set: {{ Cache-Control: no-store }} }}\n",
        backend.port()));
    client c(proxy.port());
    auto res = c.get("app.localhost", "/api/users?id=7", {{"Cookie", "secret=1"}});
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res[beast::http::field::cache_control], "no-store");
    const auto seen = backend.seen_requests();
    ASSERT_EQ(seen.size(), 1U);
    EXPECT_EQ(seen[0].target(), "/v1/users?id=7");
    EXPECT_EQ(seen[0]["X-Env"], "dev");
    EXPECT_EQ(seen[0].count(beast::http::field::cookie), 0U);
    EXPECT_EQ(seen[0][beast::http::field::host], fmt::format("127.0.0.1:{}", backend.port()));
}

TEST(RewriteTest, AbsoluteFormTargetWinsOverHost)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    const auto raw = raw_exchange(
        proxy.port(),
        "GET http://app.localhost/abs HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n");
    EXPECT_TRUE(raw.starts_with("HTTP/1.1 200 ")) << raw;
    EXPECT_NE(raw.find("GET /abs host=app.localhost"), std::string::npos) << raw;
}

TEST(RewriteTest, AbsoluteFormTargetWithoutHostIsRefusedInHttp11)
{
    // RFC 9112 §3.2: Host is required in HTTP/1.1 whatever the target's form; HTTP/1.0 may
    // leave it out.
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    const auto raw = raw_exchange(proxy.port(), "GET http://app.localhost/abs HTTP/1.1\r\n\r\n");
    EXPECT_TRUE(raw.starts_with("HTTP/1.1 400 ")) << raw;
    EXPECT_NE(raw.find("need a Host header"), std::string::npos) << raw;
    EXPECT_TRUE(backend.seen().empty());
    const auto old = raw_exchange(proxy.port(), "GET http://app.localhost/abs HTTP/1.0\r\n\r\n");
    EXPECT_TRUE(old.starts_with("HTTP/1.0 200 ")) << old;
    EXPECT_NE(old.find("GET /abs host=app.localhost"), std::string::npos) << old;
}

TEST(RewriteTest, AbsoluteFormSchemeInAnyCaseAndAnEmptyPath)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    // The scheme is case-insensitive, and an empty path is "/" (RFC 9110 §4.2.3).
    for (const auto& [target, seen] :
         {std::pair{"Http://app.localhost/x", "GET /x host=app.localhost"},
          std::pair{"hTTp://app.localhost?q=1", "GET /?q=1 host=app.localhost"},
          std::pair{"http://app.localhost", "GET / host=app.localhost"}}) {
        const auto raw = raw_exchange(
            proxy.port(),
            fmt::format("GET {} HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
                        target));
        EXPECT_TRUE(raw.starts_with("HTTP/1.1 200 ")) << target << raw;
        EXPECT_NE(raw.find(seen), std::string::npos) << target << raw;
    }
}

TEST(RewriteTest, DotSegmentsAreNormalisedBeforeRouting)
{
    origin backend;
    proxy_harness proxy(fmt::format("routes:\n  - host: app.localhost\n    path: /public\n"
                                    "    to: 127.0.0.1:{}\n",
                                    backend.port()));
    client c(proxy.port());
    auto res = c.get("app.localhost", "/public/../secret");
    EXPECT_EQ(res.result_int(), 404);
    client d(proxy.port());
    auto ok = d.get("app.localhost", "/public/a/./b/../%7Ec");
    EXPECT_EQ(ok.body(), "GET /public/a/~c host=app.localhost body=0");
}

TEST(ShutdownTest, InFlightRequestFinishesThenRunReturns)
{
    std::atomic<bool> got_request{false};
    origin backend([&got_request](origin_connection& c) {
        auto req = c.read_request();
        if (!req) {
            return;
        }
        got_request = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        response res{beast::http::status::ok, 11};
        res.body() = "finished";
        res.prepare_payload();
        c.write(res);
    });
    proxy_harness proxy(route_to(backend.port()));
    client idle(proxy.port()); // an idle keep-alive connection must not hold up shutdown
    client c(proxy.port());
    c.write_raw("GET /work HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    ASSERT_TRUE(wait_until([&got_request] { return got_request.load(); }));
    const auto stop_time = std::chrono::steady_clock::now();
    proxy.stop();
    auto res = c.read_response();
    EXPECT_EQ(res.body(), "finished");
    EXPECT_EQ(res[beast::http::field::connection], "close");
    EXPECT_TRUE(proxy.wait_stopped());
    // Nothing the finished exchange leaves behind (its backend connection and that
    // connection's deadline timer) holds the worker past the request.
    EXPECT_LT(std::chrono::steady_clock::now() - stop_time, std::chrono::seconds(2));
    EXPECT_TRUE(idle.is_closed_by_peer());
}

TEST(ShutdownTest, IdleConnectionsAreClosedAtOnceWhateverTheyServed)
{
    // Connections wait differently after one request (parked, with no coroutine) and after
    // more (in a read): shutdown must close both at once instead of waiting out
    // `timeouts.shutdown`.
    origin backend;
    proxy_harness proxy("timeouts: { shutdown: 30s }\n" + route_to(backend.port()));
    client once(proxy.port());
    EXPECT_EQ(once.get("app.localhost", "/1").result_int(), 200);
    client twice(proxy.port());
    EXPECT_EQ(twice.get("app.localhost", "/1").result_int(), 200);
    EXPECT_EQ(twice.get("app.localhost", "/2").result_int(), 200);
    const auto start = std::chrono::steady_clock::now();
    proxy.stop();
    EXPECT_TRUE(proxy.wait_stopped(std::chrono::seconds(5)));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    EXPECT_TRUE(once.is_closed_by_peer());
    EXPECT_TRUE(twice.is_closed_by_peer());
}

TEST(ShutdownTest, RequestWhoseHeadHasBegunIsServed)
{
    // A request is in flight from its first byte (as Go's server counts it): a shutdown
    // that starts while its head arrives lets it finish.
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    client idle(proxy.port());
    EXPECT_EQ(idle.get("app.localhost", "/first").result_int(), 200);
    client c(proxy.port());
    c.write_raw("GET /late HTTP/1.1\r\nHost: app.l");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    proxy.stop();
    // The idle connection's close says the shutdown has begun.
    EXPECT_TRUE(idle.is_closed_by_peer());
    c.write_raw("ocalhost\r\n\r\n");
    const auto res = c.read_response();
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res[beast::http::field::connection], "close");
    EXPECT_TRUE(proxy.wait_stopped());
}

TEST(ShutdownTest, StuckRequestIsClosedAfterShutdownTimeout)
{
    origin backend(never_answers);
    proxy_harness proxy("timeouts: { shutdown: 300ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("GET /stuck HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    ASSERT_TRUE(wait_until([&backend] { return backend.connections() == 1; }));
    const auto stop_time = std::chrono::steady_clock::now();
    proxy.stop();
    EXPECT_TRUE(proxy.wait_stopped(std::chrono::seconds(5)));
    // Closed at the deadline, without the lingering close an error page otherwise gets.
    EXPECT_LT(std::chrono::steady_clock::now() - stop_time, std::chrono::milliseconds(1500));
    // And with no page: the deadline cut the wait, the backend did not break it.
    EXPECT_EQ(c.read_until_closed(), "");
}

} // namespace
} // namespace portico::test
