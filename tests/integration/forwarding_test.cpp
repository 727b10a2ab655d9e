// End-to-end forwarding through an in-process portico: real loopback sockets, real
// backends (tests/support/origin), real clients.

#include "support/origin.hpp"
#include "support/proxy_harness.hpp"
#include "support/tcp_counts.hpp"

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

namespace portico::test {
namespace {

std::string route_to(unsigned short port, std::string_view host = "app.localhost",
                     std::string_view extra = "")
{
    return fmt::format("routes:\n  - host: {}\n    to: 127.0.0.1:{}\n{}", host, port, extra);
}

/// At least `size` bytes from `c` (fewer if it closes or its 5 s bound passes first).
std::string read_at_least(client& c, std::size_t size)
{
    std::string received;
    std::array<char, 4096> chunk{};
    while (received.size() < size) {
        boost::system::error_code ec;
        const auto n = c.stream.read_some(net::buffer(chunk), ec);
        if (ec) {
            break;
        }
        received.append(chunk.data(), n);
    }
    return received;
}

/// Sends `HEAD target` for app.localhost on `c` and reads the response, which has no body.
response head_request(client& c, std::string_view target)
{
    c.write_raw(fmt::format("HEAD {} HTTP/1.1\r\nHost: app.localhost\r\n\r\n", target));
    beast::http::response_parser<beast::http::string_body> parser;
    parser.skip(true);
    beast::http::read(c.stream, c.buffer, parser);
    return parser.release();
}

TEST(ForwardingTest, GetReachesBackendWithForwardedHeaders)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    auto res = c.get("app.localhost:7080", "/hello?x=1",
                     {{"X-Forwarded-For", "6.6.6.6"}, {"X-Forwarded-Proto", "gopher"}});
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "GET /hello?x=1 host=app.localhost:7080 body=0");
    EXPECT_EQ(res[beast::http::field::via], "1.1 portico");
    const auto seen = backend.seen_requests();
    ASSERT_EQ(seen.size(), 1U);
    EXPECT_EQ(seen[0]["X-Forwarded-For"], "127.0.0.1");
    EXPECT_EQ(seen[0]["X-Forwarded-Proto"], "http");
    EXPECT_EQ(seen[0]["X-Forwarded-Host"], "app.localhost:7080");
    EXPECT_EQ(seen[0][beast::http::field::via], "1.1 portico");
}

TEST(ForwardingTest, KeepAliveReusesBothSides)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    for (int i = 0; i < 5; ++i) {
        auto res = c.get("app.localhost", "/n/" + std::to_string(i));
        ASSERT_EQ(res.result_int(), 200);
        EXPECT_EQ(res.body(), fmt::format("GET /n/{} host=app.localhost body=0", i));
    }
    EXPECT_EQ(backend.connections(), 1);
}

/// The proxy's end of the client connection whose local port is `client_port` (the proxy
/// runs in this process), found among this process's descriptors; -1 if none.
int proxy_side_of(unsigned short proxy_port, unsigned short client_port)
{
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        const int fd = std::atoi(entry.path().filename().c_str());
        sockaddr_in local{};
        sockaddr_in peer{};
        socklen_t local_length = sizeof(local);
        socklen_t peer_length = sizeof(peer);
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) == 0 &&
            ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) == 0 &&
            local.sin_family == AF_INET && ntohs(local.sin_port) == proxy_port &&
            ntohs(peer.sin_port) == client_port) {
            return fd;
        }
    }
    return -1;
}

TEST(ForwardingTest, AcceptedConnectionsAreNonBlockingWithNagleOff)
{
    // Connections are taken with accept4 and inherit TCP_NODELAY from the listener, with no
    // system call of their own for either: both must hold all the same.
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/").result_int(), 200);
    const int fd = proxy_side_of(proxy.port(), c.socket.local_endpoint().port());
    ASSERT_GE(fd, 0);
    int no_delay = 0;
    socklen_t length = sizeof(no_delay);
    ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &no_delay, &length), 0);
    EXPECT_EQ(no_delay, 1);
    EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
}

TEST(ForwardingTest, PipelinedRequestsAnsweredInOrder)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("GET /1 HTTP/1.1\r\nHost: app.localhost\r\n\r\n"
                "GET /2 HTTP/1.1\r\nHost: app.localhost\r\n\r\n"
                "GET /3 HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    for (int i = 1; i <= 3; ++i) {
        auto res = c.read_response();
        EXPECT_EQ(res.body(), fmt::format("GET /{} host=app.localhost body=0", i));
    }
}

TEST(ForwardingTest, LastResponseReachesAClientThatReadsLateWhole)
{
    // The last response on a connection is sent without waiting for the socket (what the
    // socket does not take goes by an ordinary write): a client that reads late still gets
    // every response whole, then the close.
    const std::string filler(700, 'x');
    origin backend([&filler](origin_connection& c) {
        while (auto req = c.read_request()) {
            const auto body = std::string(req->target()) + filler;
            c.write_raw(
                fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}", body.size(), body));
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    ASSERT_EQ(c.get("app.localhost", "/first").result_int(), 200);
    // Small socket buffers on both ends: portico's writes wait for the client to read.
    const int fd = proxy_side_of(proxy.port(), c.socket.local_endpoint().port());
    ASSERT_GE(fd, 0);
    const int small = 4096;
    ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    ASSERT_EQ(::setsockopt(c.socket.native_handle(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)),
              0);
    constexpr int count = 200; // about 150 KB of responses
    std::string requests;
    for (int i = 0; i < count; ++i) {
        requests += fmt::format("GET /{} HTTP/1.1\r\nHost: app.localhost\r\n{}\r\n", i,
                                i + 1 == count ? "Connection: close\r\n" : "");
    }
    c.write_raw(requests);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    for (int i = 0; i < count; ++i) {
        const auto res = c.read_response();
        ASSERT_EQ(res.body(), fmt::format("/{}{}", i, filler)) << "response " << i;
    }
    EXPECT_TRUE(c.is_closed_by_peer());
}

TEST(ForwardingTest, FirstBytesThatComeLateAndInPiecesAreServed)
{
    // A new connection's first bytes are read straight from the socket when they are there;
    // a client that connects and sends later, a piece at a time, is waited for.
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    c.write_raw("GET /la");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    c.write_raw("te HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    EXPECT_EQ(c.read_response().body(), "GET /late host=app.localhost body=0");
}

TEST(ForwardingTest, LastResponseOnAConnectionEndsInTheSegmentThatCarriesTheFin)
{
    // Each segment on loopback costs both ends CPU: the response a connection closes after
    // goes out with the FIN in one segment. The client then receives, besides segments with
    // data, only the SYN-ACK and the ACK of its request (sent at once: a connection's first
    // data is acknowledged in quick-ACK mode); a FIN of its own would be a third.
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    for (int i = 0; i < 3; ++i) {
        client c(proxy.port());
        c.write_raw("GET /fin HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n");
        const auto answer = c.read_until_closed();
        EXPECT_TRUE(answer.ends_with("GET /fin host=app.localhost body=0")) << answer;
        const auto counts = segment_counts(c.socket.native_handle());
        ASSERT_TRUE(counts) << "a kernel without segment counts";
        EXPECT_LE(counts->received - counts->received_with_data, 2U)
            << counts->received << " segments in, " << counts->received_with_data << " with data";
    }
}

TEST(ForwardingTest, ConnectionWaitingAfterItsFirstRequestServesWhatComesNext)
{
    // After its first request a connection waits with no coroutine and no buffer; what
    // arrives then (pipelined requests, a head that stalls) is served as on a fresh one.
    origin backend;
    proxy_harness proxy("timeouts: { header: 300ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/first").result_int(), 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    c.write_raw("GET /2 HTTP/1.1\r\nHost: app.localhost\r\n\r\n"
                "GET /3 HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    for (int i = 2; i <= 3; ++i) {
        auto res = c.read_response();
        EXPECT_EQ(res.body(), fmt::format("GET /{} host=app.localhost body=0", i));
    }
    client stalled(proxy.port());
    EXPECT_EQ(stalled.get("app.localhost", "/first").result_int(), 200);
    stalled.write_raw("GET /late HTTP/1.1\r\nHost: app.loc");
    const auto res = stalled.read_response();
    EXPECT_EQ(res.result_int(), 408);
    EXPECT_EQ(res["X-Portico-Error"], "header_timeout");
    EXPECT_TRUE(stalled.is_closed_by_peer());
    EXPECT_EQ(backend.seen().size(), 4U);
}

TEST(ForwardingTest, WaitingConnectionsThatTheClientClosesOrResetsAreForgotten)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    auto closed = std::make_unique<client>(proxy.port());
    auto reset = std::make_unique<client>(proxy.port());
    client kept(proxy.port());
    for (auto* c : {closed.get(), reset.get(), &kept}) {
        EXPECT_EQ(c->get("app.localhost", "/").result_int(), 200);
    }
    ASSERT_TRUE(wait_until([&proxy] { return proxy.observatory().active_connections() == 3; }));
    closed.reset();
    reset->socket.set_option(net::socket_base::linger(true, 0));
    reset.reset();
    EXPECT_TRUE(wait_until([&proxy] { return proxy.observatory().active_connections() == 1; }));
    EXPECT_EQ(kept.get("app.localhost", "/again").result_int(), 200);
}

TEST(ForwardingTest, Http10RequestGetsClosedResponse)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    const auto raw = raw_exchange(proxy.port(), "GET /old HTTP/1.0\r\nHost: app.localhost\r\n\r\n");
    EXPECT_TRUE(raw.starts_with("HTTP/1.0 200")) << raw;
    EXPECT_NE(raw.find("GET /old host=app.localhost"), std::string::npos) << raw;
}

TEST(ForwardingTest, ChunkedUploadIsStreamedAndReframed)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    // Twice on one connection, then a request without a body: each re-framed body ends with
    // one last chunk, or the backend would read the rest as the start of the next request.
    for (int i = 0; i < 2; ++i) {
        c.write_raw("POST /up HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        auto res = c.read_response();
        EXPECT_EQ(res.result_int(), 200) << i;
        EXPECT_EQ(res.body(), "POST /up host=app.localhost body=11") << i;
    }
    EXPECT_EQ(c.get("app.localhost", "/after").result_int(), 200);
    EXPECT_EQ(backend.connections(), 1);
    EXPECT_EQ(backend.seen(), (std::vector<std::string>{"POST /up", "POST /up", "GET /after"}));
}

TEST(ForwardingTest, ChunkedResponsesEndOnceOnAKeptAliveConnection)
{
    // Each re-chunked response ends with one last chunk: a second one would be read by the
    // client as the start of the next response on the connection.
    origin backend([](origin_connection& c) {
        while (c.read_request()) {
            c.write_raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n0\r\n\r\n");
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("GET /1 HTTP/1.1\r\nHost: app.localhost\r\n\r\n"
                "GET /2 HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    const std::string one = "HTTP/1.1 200 OK\r\nVia: 1.1 portico\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5\r\nhello\r\n0\r\n\r\n";
    const auto received = read_at_least(c, 2 * one.size());
    EXPECT_EQ(received, one + one);
}

TEST(ForwardingTest, TrailersGoOnLessHopByHopFramingAndRemovedFields)
{
    // A chunked body's trailer section (after the last chunk) is forwarded both ways, as
    // with `TE: trailers` the client said it takes them; what a recipient merging them into
    // the head would act on (Host, Content-Length, hop-by-hop fields, those the head's
    // Connection names among them) and what the route removes are left out.
    std::mutex m;
    std::vector<std::string> request_trailers;
    origin backend([&](origin_connection& c) {
        while (auto req = c.read_request()) {
            {
                const std::scoped_lock lock(m);
                request_trailers.push_back(fmt::format(
                    "{} host={} sum={} secret={} dup={} xff={} env={} hop={}", req->body(),
                    req->count("Host"), (*req)["X-Req-Sum"], req->count("X-Req-Secret"),
                    req->count("X-Dup"), req->count("X-Forwarded-For"), req->count("X-Env"),
                    req->count("X-Req-Hop")));
            }
            c.write_raw("HTTP/1.1 200 OK\r\nServer-Timing: db;dur=1\r\nTransfer-Encoding: chunked\r\n"
                        "Trailer: X-Checksum\r\nConnection: X-Hop\r\n\r\n"
                        "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nKeep-Alive: timeout=1\r\nx-hop: 1\r\n"
                        "Server-Timing: total;dur=2\r\nX-Secret: s\r\nVia: 1.1 spoof\r\n\r\n");
        }
    });
    proxy_harness proxy(route_to(backend.port(), "app.localhost",
                                 "    headers:\n"
                                 "      request: { remove: [X-Req-Secret], set: { X-Env: dev } }\n"
                                 "      response: { remove: [x-secret] }\n"));
    client c(proxy.port());
    const std::string upload =
        "POST /up HTTP/1.1\r\nHost: app.localhost\r\nTE: trailers\r\nX-Dup: head\r\n"
        "Connection: TE, x-req-hop\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
        "X-Req-Sum: 9\r\nX-Req-Hop: 1\r\nHost: evil.example\r\n"
        "X-Req-Secret: 1\r\nX-Dup: trailer\r\nX-Forwarded-For: 6.6.6.6\r\nX-Env: prod\r\n\r\n";
    // A trailer field named like a head field is a trailer all the same (Beast files it
    // beside the head's); the edge's own fields are not taken from a trailer.
    const std::string one = "HTTP/1.1 200 OK\r\nServer-Timing: db;dur=1\r\nVia: 1.1 portico\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n"
                            "5\r\nhello\r\n0\r\nServer-Timing: total;dur=2\r\nX-Checksum: abc\r\n\r\n";
    // Twice on one connection: each message ends once, trailers and all, on both sides.
    c.write_raw(upload + upload);
    const auto received = read_at_least(c, 2 * one.size());
    EXPECT_EQ(received, one + one);
    EXPECT_EQ(c.get("app.localhost", "/after").result_int(), 200);
    const std::scoped_lock lock(m);
    const std::string posted = "abc host=1 sum=9 secret=0 dup=2 xff=1 env=1 hop=0";
    EXPECT_EQ(request_trailers,
              (std::vector<std::string>{posted, posted,
                                        " host=1 sum= secret=0 dup=0 xff=1 env=1 hop=0"}));
    EXPECT_EQ(backend.connections(), 1);
}

TEST(ForwardingTest, TrailersAreDroppedForAnHttp10Client)
{
    origin backend([](origin_connection& c) {
        if (c.read_request()) {
            c.write_raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n");
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    const auto raw = raw_exchange(proxy.port(), "GET / HTTP/1.0\r\nHost: app.localhost\r\n\r\n");
    EXPECT_EQ(raw, "HTTP/1.0 200 OK\r\nVia: 1.1 portico\r\n\r\nhello");
}

TEST(ForwardingTest, AnswersBeforeForwardingNameTheirRouteAndNoBackend)
{
    // SPEC: the access line's BACKEND is "-" when no backend was reached; a redirect or an
    // error page for a route is counted for that route (metrics, dashboard, log).
    origin backend;
    proxy_harness proxy(fmt::format(
        "limits: {{ body_bytes: 10 }}\nroutes:\n"
        "  - host: app.localhost\n    to: 127.0.0.1:{0}\n"
        "  - host: sec.localhost\n    to: 127.0.0.1:{0}\n    redirect_https: true\n"
        "  - host: pt.localhost\n    to: 127.0.0.1:{0}\n    tls_passthrough: true\n",
        backend.port()));
    const auto latest = [&proxy](unsigned status) {
        std::optional<admin::request_sample> found;
        wait_until([&] {
            const auto recent = proxy.observatory().recent();
            if (!recent.empty() && recent.front().status == status) {
                found = recent.front();
            }
            return found.has_value();
        });
        return found.value_or(admin::request_sample{});
    };
    {
        client c(proxy.port());
        c.write_raw("POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 17\r\n\r\n"
                    "hello world 12345");
        EXPECT_EQ(c.read_response().result_int(), 413);
        const auto r = latest(413);
        EXPECT_EQ(r.route, "app.localhost");
        EXPECT_EQ(r.backend, "");
    }
    {
        const auto raw = raw_exchange(proxy.port(),
                                      "POST / HTTP/1.1\r\nHost: app.localhost\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\nZZ\r\n");
        EXPECT_TRUE(raw.starts_with("HTTP/1.1 400 ")) << raw;
        const auto r = latest(400);
        EXPECT_EQ(r.route, "app.localhost");
        EXPECT_EQ(r.backend, "");
    }
    {
        client c(proxy.port());
        EXPECT_EQ(c.get("sec.localhost", "/r").result_int(), 308);
        const auto r = latest(308);
        EXPECT_EQ(r.route, "sec.localhost");
        EXPECT_EQ(r.backend, "");
    }
    {
        client c(proxy.port());
        const auto res = c.get("pt.localhost", "/");
        EXPECT_EQ(res.result_int(), 400);
        EXPECT_EQ(res["X-Portico-Error"], "tls_required");
        EXPECT_EQ(latest(400).route, "pt.localhost");
    }
    EXPECT_TRUE(backend.seen().empty());
    const auto totals = proxy.observatory().totals();
    ASSERT_TRUE(totals.routes.contains("sec.localhost"));
    EXPECT_EQ(totals.routes.at("sec.localhost").by_status.at(308), 1U);
}

TEST(ForwardingTest, BackendBreakingOffMidBodyIsCountedAsAnUpstreamError)
{
    origin backend([](origin_connection& c) {
        if (c.read_request()) {
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    const auto raw = raw_exchange(proxy.port(), "GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    EXPECT_TRUE(raw.ends_with("0123456789")) << raw;
    EXPECT_TRUE(wait_until([&proxy] {
        const auto totals = proxy.observatory().totals();
        const auto route = totals.routes.find("app.localhost");
        return route != totals.routes.end() && route->second.upstream_errors.contains("upstream_aborted") &&
               route->second.errors == 1;
    }));
}

TEST(ForwardingTest, IdleBackendConnectionsAreClosedAfterTheIdleTimeout)
{
    // SPEC: timeouts.idle applies to keep-alive on both sides. A pooled connection is
    // closed once it has been idle that long, not kept until the next request finds it old.
    std::atomic<bool> closed{false};
    origin backend([&closed](origin_connection& c) {
        while (c.read_request()) {
            response res{beast::http::status::ok, 11};
            res.body() = "x";
            res.prepare_payload();
            c.write(res);
        }
        closed = true;
    });
    proxy_harness proxy("timeouts: { idle: 300ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/").result_int(), 200);
    EXPECT_TRUE(wait_until([&closed] { return closed.load(); }, std::chrono::seconds(3)));
}

TEST(ForwardingTest, BackendConnectionTheBackendClosedIsClosedWhileIdle)
{
    // A backend that closes its side of an idle connection (a dev server restarting) sees
    // portico close it too, instead of the socket staying in CLOSE-WAIT until a request.
    std::atomic<bool> closed_by_proxy{false};
    origin backend([&closed_by_proxy](origin_connection& c) {
        if (!c.read_request()) {
            return;
        }
        c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
        ::shutdown(c.socket.native_handle(), SHUT_WR);
        std::array<char, 64> chunk{};
        boost::system::error_code ec;
        c.stream.read_some(net::buffer(chunk), ec);
        closed_by_proxy = ec == net::error::eof;
    });
    proxy_harness proxy("timeouts: { idle: 30s }\n" + route_to(backend.port()));
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/").result_int(), 200);
    EXPECT_TRUE(
        wait_until([&closed_by_proxy] { return closed_by_proxy.load(); }, std::chrono::seconds(4)));
}

TEST(ForwardingTest, UnknownHostGets404ListingRoutesAndIsNotForwarded)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port(), "app.localhost",
                                 "  - host: \"*.wild.localhost\"\n    to: 127.0.0.1:1\n"));
    client c(proxy.port());
    auto res = c.get("evil.example", "/");
    EXPECT_EQ(res.result_int(), 404);
    EXPECT_EQ(res["X-Portico-Error"], "no_route");
    EXPECT_NE(res.body().find(fmt::format("http://app.localhost:{}/", proxy.port())),
              std::string::npos);
    EXPECT_NE(res.body().find("*.wild.localhost"), std::string::npos);
    EXPECT_TRUE(backend.seen().empty());

    client j(proxy.port());
    auto json = j.get("evil.example", "/", {{"Accept", "application/json"}});
    EXPECT_EQ(json.result_int(), 404);
    EXPECT_NE(json.body().find("\"error\":\"no_route\""), std::string::npos) << json.body();
}

TEST(ForwardingTest, RefusedBackendGets502NamingTheAddress)
{
    refused_port dead;
    const auto dead_port = dead.port();
    proxy_harness proxy(route_to(dead_port));
    client c(proxy.port());
    auto res = c.get("app.localhost", "/");
    EXPECT_EQ(res.result_int(), 502);
    EXPECT_EQ(res["X-Portico-Error"], "upstream_refused");
    EXPECT_NE(res.body().find(fmt::format("127.0.0.1:{}", dead_port)), std::string::npos);
    EXPECT_TRUE(c.is_closed_by_peer());
}

TEST(ForwardingTest, ErrorAnswerToHeadHasNoBody)
{
    // A response to HEAD carries no body (RFC 9110 §9.3.2), an error page's included.
    refused_port dead;
    proxy_harness proxy(route_to(dead.port()));
    const auto raw = raw_exchange(proxy.port(), "HEAD /x HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    EXPECT_TRUE(raw.starts_with("HTTP/1.1 502 ")) << raw;
    EXPECT_NE(raw.find("X-Portico-Error: upstream_refused"), std::string::npos) << raw;
    EXPECT_TRUE(raw.ends_with("\r\n\r\n")) << raw;
    EXPECT_EQ(raw.find("<html"), std::string::npos) << raw;
}

TEST(ForwardingTest, LocalhostBackendOnlyOnIpv6IsReached)
{
    origin backend({}, "::1");
    proxy_harness proxy(fmt::format("routes:\n  - host: app.localhost\n    to: localhost:{}\n",
                                    backend.port()));
    client c(proxy.port());
    auto res = c.get("app.localhost", "/six");
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "GET /six host=app.localhost body=0");
}

TEST(ForwardingTest, BackendNamedByHostNameIsResolvedOffTheWorker)
{
    // The machine's own name, when /etc/hosts gives it loopback addresses only: the system
    // resolver finds it there and asks no name server, so no query leaves the machine.
    std::array<char, 256> name{};
    ASSERT_EQ(::gethostname(name.data(), name.size() - 1), 0);
    std::string address;
    bool loopback_only = true;
    std::ifstream hosts("/etc/hosts");
    for (std::string line; std::getline(hosts, line);) {
        std::istringstream fields(line.substr(0, line.find('#')));
        std::string ip;
        fields >> ip;
        for (std::string alias; fields >> alias;) {
            if (alias != name.data()) {
                continue;
            }
            boost::system::error_code ec;
            const auto parsed = net::ip::make_address(ip, ec);
            loopback_only = loopback_only && !ec && parsed.is_loopback();
            if (address.empty() && !ec && parsed.is_v4()) {
                address = ip;
            }
        }
    }
    if (address.empty()) {
        GTEST_SKIP() << "/etc/hosts gives the host name " << name.data() << " no IPv4 address";
    }
    if (!loopback_only) {
        GTEST_SKIP() << "the host name " << name.data() << " is not a loopback name here";
    }

    origin backend({}, address);
    proxy_harness proxy(fmt::format("routes:\n  - host: app.localhost\n    to: {}:{}\n"
                                    "allow_remote_backends: true\n",
                                    name.data(), backend.port()));
    client c(proxy.port());
    for (int i = 0; i < 3; ++i) {
        auto res = c.get("app.localhost", "/named");
        EXPECT_EQ(res.result_int(), 200);
        EXPECT_EQ(res.body(), "GET /named host=app.localhost body=0");
    }
    // A name that resolves but where nothing listens: the 502 names what was tried.
    refused_port dead;
    proxy.reload(fmt::format("routes:\n  - host: app.localhost\n    to: {}:{}\n"
                             "allow_remote_backends: true\n",
                             name.data(), dead.port()));
    client fresh(proxy.port());
    auto res = fresh.get("app.localhost", "/");
    EXPECT_EQ(res.result_int(), 502);
    EXPECT_NE(res.body().find(fmt::format("{}:{}", address, dead.port())), std::string::npos)
        << res.body();
}

TEST(ForwardingTest, LocalhostRefusedNamesBothAddresses)
{
    refused_port dead;
    const auto dead_port = dead.port();
    proxy_harness proxy(
        fmt::format("routes:\n  - host: app.localhost\n    to: localhost:{}\n", dead_port));
    client c(proxy.port());
    auto res = c.get("app.localhost", "/");
    EXPECT_EQ(res.result_int(), 502);
    EXPECT_NE(res.body().find(fmt::format("127.0.0.1:{}", dead_port)), std::string::npos);
    EXPECT_NE(res.body().find(fmt::format("[::1]:{}", dead_port)), std::string::npos);
}

TEST(ForwardingTest, UnixSocketBackend)
{
    temp_dir dir;
    const auto sock = dir.path() / "dev.sock";
    origin backend(sock, {});
    proxy_harness proxy(
        fmt::format("routes:\n  - host: app.localhost\n    to: unix:{}\n", sock.string()));
    client c(proxy.port());
    auto res = c.get("app.localhost", "/u");
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "GET /u host=app.localhost body=0");
}

TEST(ForwardingTest, UnixSocketBackendNotAcceptingGets504AfterTheConnectTimeout)
{
    // A unix socket whose accept queue is full refuses a connect at once (EAGAIN); as for a
    // TCP backend that does not accept, that is a connect timeout, not an invalid response.
    temp_dir dir;
    const auto sock = dir.path() / "busy.sock";
    const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listener, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, sock.c_str(), sizeof address.sun_path - 1);
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(listener, 0), 0); // and never accepts
    std::vector<int> queued;
    for (int i = 0; i < 8; ++i) {
        const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (::connect(s, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
            ::close(s);
            break; // the queue is full
        }
        queued.push_back(s);
    }
    proxy_harness proxy(fmt::format("timeouts: {{ connect: 300ms }}\n"
                                    "routes:\n  - host: app.localhost\n    to: unix:{}\n",
                                    sock.string()));
    client c(proxy.port());
    const auto start = std::chrono::steady_clock::now();
    const auto res = c.get("app.localhost", "/");
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(res.result_int(), 504);
    EXPECT_EQ(res["X-Portico-Error"], "upstream_connect_timeout");
    EXPECT_GE(took, std::chrono::milliseconds(250));
    for (const int s : queued) {
        ::close(s);
    }
    ::close(listener);
}

TEST(ForwardingTest, IdleKeepAliveConnectionIsClosedAfterIdleTimeout)
{
    origin backend;
    proxy_harness proxy("timeouts: { idle: 200ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/").result_int(), 200);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(c.is_closed_by_peer());
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));

    // A connection that came back for more waits differently (in a read, with a buffer,
    // rather than parked): the same deadline closes it.
    client reused(proxy.port());
    EXPECT_EQ(reused.get("app.localhost", "/1").result_int(), 200);
    EXPECT_EQ(reused.get("app.localhost", "/2").result_int(), 200);
    const auto second = std::chrono::steady_clock::now();
    EXPECT_TRUE(reused.is_closed_by_peer());
    EXPECT_LT(std::chrono::steady_clock::now() - second, std::chrono::seconds(1));
}

TEST(ForwardingTest, SlowAnswerOnAConnectionThatCameBackOutlastsTheIdleTimeout)
{
    // The idle deadline bounds the wait for a request, not the backend's answer to it. The
    // second request is read after the connection was parked, the third from what the
    // wait in a connection in use read (its head is found in the buffer).
    origin backend{[](origin_connection& c) {
        while (auto req = c.read_request()) {
            if (req->target() == "/slow") {
                std::this_thread::sleep_for(std::chrono::milliseconds(600));
            }
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    }};
    proxy_harness proxy("timeouts: { idle: 200ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/").result_int(), 200);
    EXPECT_EQ(c.get("app.localhost", "/slow").result_int(), 200);
    EXPECT_EQ(c.get("app.localhost", "/slow").result_int(), 200);
}

TEST(ForwardingTest, EmptyLinesBeforeAKeptAliveRequestAreSkipped)
{
    // RFC 9112 §2.2: empty lines before a request line are ignored, on the first request
    // and on any that follows it on the connection, pipelined or not.
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    c.write_raw("\r\nGET /1 HTTP/1.1\r\nHost: app.localhost\r\n\r\n"
                "\r\n\r\nGET /2 HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    EXPECT_EQ(c.read_response().body(), "GET /1 host=app.localhost body=0");
    EXPECT_EQ(c.read_response().body(), "GET /2 host=app.localhost body=0");
    c.write_raw("\nGET /3 HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    EXPECT_EQ(c.read_response().body(), "GET /3 host=app.localhost body=0");
}

TEST(ForwardingTest, BodilessResponsesKeepBothConnectionsUsable)
{
    origin backend([](origin_connection& c) {
        for (;;) {
            auto req = c.read_request();
            if (!req) {
                return;
            }
            if (req->target() == "/204") {
                c.write_raw("HTTP/1.1 204 No Content\r\n\r\n");
            } else if (req->target() == "/304") {
                c.write_raw("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n");
            } else {
                c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
                if (req->method() != beast::http::verb::head) {
                    c.write_raw("hello");
                }
            }
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    EXPECT_EQ(head_request(c, "/h")[beast::http::field::content_length], "5");
    EXPECT_EQ(c.get("app.localhost", "/204").result_int(), 204);
    EXPECT_EQ(c.get("app.localhost", "/304").result_int(), 304);
    EXPECT_EQ(c.get("app.localhost", "/full").body(), "hello");
    EXPECT_EQ(backend.connections(), 1);
}

/**
 * A backend whose first connection answers one request, reads the next and closes without
 * answering it: a pooled connection lost after portico took it. Later connections answer
 * every request. `seen` lists "METHOD TARGET" for every request read, on any connection.
 */
struct dropping_backend {
    /// `last_words`: what the first connection sends about the second request before closing.
    explicit dropping_backend(std::string last_words = {}) : last_words_(std::move(last_words))
    {
    }

    std::string last_words_;
    std::mutex mutex;
    std::vector<std::string> seen;
    std::atomic<int> accepted{0};
    origin server{[this](origin_connection& c) {
        const bool first_connection = accepted.fetch_add(1) == 0;
        for (int n = 0;; ++n) {
            auto req = c.read_request();
            if (!req) {
                return;
            }
            {
                std::lock_guard lock(mutex);
                seen.push_back(std::string(req->method_string()) + " " +
                               std::string(req->target()));
            }
            if (first_connection && n == 1) {
                if (!last_words_.empty()) {
                    c.write_raw(last_words_);
                }
                return;
            }
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    }};
    std::vector<std::string> requests()
    {
        std::lock_guard lock(mutex);
        return seen;
    }
};

TEST(ForwardingTest, IdempotentRequestIsRetriedWhenPooledConnectionDies)
{
    dropping_backend backend;
    proxy_harness proxy(route_to(backend.server.port()));
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/1").result_int(), 200);
    auto res = c.get("app.localhost", "/2");
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "ok");
    EXPECT_EQ(backend.requests(), (std::vector<std::string>{"GET /1", "GET /2", "GET /2"}));
    EXPECT_EQ(backend.server.connections(), 2);
}

/// Reads from `fd` until a request head has arrived whole (at most five seconds).
bool read_one_head(int fd)
{
    std::string seen;
    std::array<char, 1024> chunk{};
    while (seen.find("\r\n\r\n") == std::string::npos) {
        const auto n = ::recv(fd, chunk.data(), chunk.size(), 0);
        if (n <= 0) {
            return false;
        }
        seen.append(chunk.data(), static_cast<std::size_t>(n));
    }
    return true;
}

TEST(ForwardingTest, RetryWhoseFreshConnectionIsRefusedEndsCleanlyAtShutdown)
{
    // A backend that answers once, stops listening, then drops its connection after the
    // next request: the retry's fresh connection is refused, and the client gets the 502
    // page followed by the lingering close. The shutdown deadline passing during that
    // linger cancels what the connection names as its backend connection, which by then
    // must not be the one the retry gave up (the sanitizer build sees a use after free).
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listener, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), len), 0);
    ASSERT_EQ(::listen(listener, 4), 0);
    ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    bound_socket_waits(listener);
    std::jthread backend([listener] {
        const int fd = ::accept(listener, nullptr, nullptr);
        ::close(listener);
        if (fd < 0) {
            return;
        }
        bound_socket_waits(fd);
        if (read_one_head(fd)) {
            constexpr std::string_view ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            (void)::send(fd, ok.data(), ok.size(), MSG_NOSIGNAL);
            (void)read_one_head(fd);
        }
        ::close(fd);
    });
    proxy_harness proxy("timeouts: { shutdown: 200ms }\n" + route_to(ntohs(addr.sin_port)));
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/1").result_int(), 200);
    EXPECT_EQ(c.get("app.localhost", "/2").result_int(), 502);
    backend.join();
    // The client keeps its end open: portico is lingering when the deadline passes.
    proxy.stop();
    EXPECT_TRUE(proxy.wait_stopped(std::chrono::seconds(5)));
}

TEST(ForwardingTest, RequestIsNotReplayedOnceAnyResponseCameBack)
{
    // Part of a head, or an interim response, means the backend had the request: the
    // client gets 502 and the backend does not see it again.
    for (const std::string words : {"HTTP/1.1 200 OK\r\nContent-",
                                    "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"}) {
        dropping_backend backend(words);
        proxy_harness proxy(route_to(backend.server.port()));
        client c(proxy.port());
        EXPECT_EQ(c.get("app.localhost", "/1").result_int(), 200);
        auto second = c.get("app.localhost", "/2");
        if (second.result_int() == 103) {
            second = c.read_response(); // the hints were relayed; the page follows
        }
        EXPECT_EQ(second.result_int(), 502) << words;
        EXPECT_EQ(backend.requests(), (std::vector<std::string>{"GET /1", "GET /2"})) << words;
    }
}

TEST(ForwardingTest, EachInterimResponseRestartsTheUpstreamTimeout)
{
    // 102 Processing as a heartbeat: four of them 150 ms apart outlast a 400 ms upstream
    // timeout that each one restarts.
    origin backend([](origin_connection& c) {
        if (!c.read_request()) {
            return;
        }
        for (int i = 0; i < 4; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(150));
            c.write_raw("HTTP/1.1 102 Processing\r\n\r\n");
        }
        c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
    });
    proxy_harness proxy("timeouts: { upstream: 400ms }\n" + route_to(backend.port()));
    client c(proxy.port());
    auto res = c.get("app.localhost", "/slow");
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "done");
}

TEST(ForwardingTest, RequestWithBodyIsNotReplayedWhenPooledConnectionDies)
{
    dropping_backend backend;
    proxy_harness proxy(route_to(backend.server.port()));
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/1").result_int(), 200);
    c.write_raw("POST /once HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 4\r\n\r\nbody");
    auto res = c.read_response();
    EXPECT_EQ(res.result_int(), 502);
    EXPECT_EQ(backend.requests(), (std::vector<std::string>{"GET /1", "POST /once"}));
}

TEST(ForwardingTest, RequestWhosePooledConnectionRefusesTheHeadGoesToAFreshOne)
{
    // The backend stops reading its first connection as it answers on it (a unix socket
    // shut for reading, so the next send fails at once with EPIPE), yet nothing arrives on
    // it: the pooled connection's check finds it quiet and open. The head written to it
    // fails before any of the request reached the backend, so any request, a POST
    // included, goes to a fresh connection, once.
    temp_dir dir;
    const auto sock = dir.path() / "dev.sock";
    std::atomic<int> accepted{0};
    std::mutex mutex;
    std::vector<std::string> seen;
    origin backend(sock, [&](origin_connection& c) {
        const bool first_connection = accepted.fetch_add(1) == 0;
        while (auto req = c.read_request()) {
            {
                std::lock_guard lock(mutex);
                seen.push_back(std::string(req->method_string()) + " " +
                               std::string(req->target()) + " " + req->body());
            }
            if (first_connection) {
                // Shut before the answer: once portico has the answer it may pool the
                // connection and write the next head, which must then fail.
                ::shutdown(c.socket.native_handle(), SHUT_RD);
            }
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            if (first_connection) {
                // Held open and quiet until portico has opened another connection.
                for (int i = 0; i < 500 && accepted.load() < 2; ++i) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(10));
                }
                return;
            }
        }
    });
    proxy_harness proxy(
        fmt::format("routes:\n  - host: app.localhost\n    to: unix:{}\n", sock.string()));
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/1").body(), "ok");
    c.write_raw("POST /2 HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 4\r\n\r\nbody");
    const auto res = c.read_response();
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "ok");
    EXPECT_EQ(accepted.load(), 2);
    std::lock_guard lock(mutex);
    EXPECT_EQ(seen, (std::vector<std::string>{"GET /1 ", "POST /2 body"}));
}

/// `size` bytes of a pattern that does not repeat within a few hundred bytes.
std::string patterned(std::size_t size)
{
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) {
        s[i] = static_cast<char>('a' + (i * 7 + i / 331) % 26);
    }
    return s;
}

TEST(ForwardingTest, LargeUploadsArriveByteForByteOverTcpAndUnixSockets)
{
    // A Content-Length body larger than one relay step is spliced from the client's socket
    // to the backend's; the backend sees exactly the bytes sent, in order, keep-alive goes
    // on after it, and a second upload on the same connections arrives as whole.
    const std::string body = patterned(3 * 1024 * 1024 + 17);
    const auto check = [&body](origin_connection& c) {
        while (auto req = c.read_request()) {
            response res{beast::http::status::ok, 11};
            const auto& got = req->body();
            const auto differs =
                std::mismatch(got.begin(), got.end(), body.begin(), body.end()).first;
            res.body() = got.size() == body.size() && differs == got.end()
                             ? "same"
                             : fmt::format("{} bytes, differ at {}", got.size(),
                                           differs - got.begin());
            res.prepare_payload();
            c.write(res);
        }
    };
    temp_dir dir;
    const auto sock = dir.path() / "up.sock";
    origin tcp_backend(check);
    origin unix_backend(sock, check);
    proxy_harness proxy(fmt::format("routes:\n  - host: tcp.localhost\n    to: 127.0.0.1:{}\n"
                                    "  - host: unix.localhost\n    to: unix:{}\n",
                                    tcp_backend.port(), sock.string()));
    for (const std::string host : {"tcp.localhost", "unix.localhost"}) {
        client c(proxy.port());
        for (int i = 0; i < 2; ++i) {
            request req{beast::http::verb::put, "/file", 11};
            req.set(beast::http::field::host, host);
            req.body() = body;
            req.prepare_payload();
            auto res = c.send(req);
            EXPECT_EQ(res.result_int(), 200) << host;
            EXPECT_EQ(res.body(), "same") << host << " upload " << i;
        }
    }
    EXPECT_EQ(tcp_backend.connections(), 1);
    EXPECT_EQ(unix_backend.connections(), 1);
}

/**
 * Shrinks the buffers of `c`'s connection through the in-process proxy to 4 KiB at both
 * ends (portico's SO_SNDBUF, the client's SO_RCVBUF), so that a response of some size is
 * still on its way when portico is done with it. False if portico's end was not found.
 */
bool shrink_buffers(const proxy_harness& proxy, client& c)
{
    int proxy_fd = -1;
    for (int i = 0; i < 200 && proxy_fd < 0; ++i) {
        proxy_fd = proxy_side_of(proxy.port(), c.socket.local_endpoint().port());
        if (proxy_fd < 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }
    const int small = 4096;
    return proxy_fd >= 0 &&
           ::setsockopt(proxy_fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0 &&
           ::setsockopt(c.socket.native_handle(), SOL_SOCKET, SO_RCVBUF, &small,
                        sizeof(small)) == 0;
}

/// What a slow reader got from `fd` until EOF or an error, and the error (0 for EOF).
struct slow_read {
    std::string received;
    int error = 0;
};

slow_read read_slowly(int fd)
{
    slow_read out;
    std::array<char, 4096> chunk{};
    for (int i = 0; i < 10000; ++i) {
        const auto n = ::recv(fd, chunk.data(), chunk.size(), 0);
        if (n <= 0) {
            out.error = n < 0 ? errno : 0;
            break;
        }
        out.received.append(chunk.data(), static_cast<std::size_t>(n));
        if (i % 8 == 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
    return out;
}

/// Checks that `received` is one response whose status line starts `status` and whose body
/// is `body`, whole.
void expect_whole_response(const std::string& received, std::string_view status,
                           const std::string& body)
{
    const auto head_end = received.find("\r\n\r\n");
    ASSERT_NE(head_end, std::string::npos);
    EXPECT_TRUE(received.starts_with(status)) << received.substr(0, head_end);
    EXPECT_EQ(received.size() - head_end - 4, body.size());
    EXPECT_TRUE(received.substr(head_end + 4) == body);
}

TEST(ForwardingTest, AnswerToAnUploadTheBackendCutShortArrivesWhole)
{
    // The backend reads an upload's head, answers 413 with a large body and closes without
    // reading the body, so portico's body write fails. portico relays the answer while
    // the client is still sending and reads slowly. Closed with the client's bytes unread,
    // the connection would be reset and the response's unsent end dropped; portico shuts
    // its side and reads the rest of the body away first.
    temp_dir dir;
    const auto sock = dir.path() / "dev.sock";
    const std::string answer = patterned(128 * 1024); // within what a unix socket holds unread
    origin backend(sock, [&answer](origin_connection& c) {
        std::string head;
        std::array<char, 1024> chunk{};
        while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
            const auto n = ::recv(c.socket.native_handle(), chunk.data(), chunk.size(), 0);
            if (n <= 0) {
                return;
            }
            head.append(chunk.data(), static_cast<std::size_t>(n));
        }
        c.write_raw(fmt::format("HTTP/1.1 413 Payload Too Large\r\nContent-Length: {}\r\n"
                                "Connection: close\r\n\r\n",
                                answer.size()));
        c.write_raw(answer);
    });
    proxy_harness proxy(
        fmt::format("routes:\n  - host: app.localhost\n    to: unix:{}\n", sock.string()));
    client c(proxy.port());
    const int fd = c.socket.native_handle();
    ASSERT_TRUE(shrink_buffers(proxy, c));

    static constexpr std::size_t body_size = 768 * 1024;
    std::thread uploader([fd] {
        const std::string head = fmt::format(
            "POST /upload HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: {}\r\n\r\n",
            body_size);
        const std::string body(body_size, 'b');
        for (const std::string_view part : {std::string_view(head), std::string_view(body)}) {
            std::size_t sent = 0;
            while (sent < part.size()) {
                const auto n = ::send(fd, part.data() + sent, part.size() - sent, MSG_NOSIGNAL);
                if (n <= 0) {
                    return; // reset, or blocked past the socket's 5 s limit
                }
                sent += static_cast<std::size_t>(n);
            }
        }
        ::shutdown(fd, SHUT_WR);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const auto [received, error] = read_slowly(fd);
    uploader.join();
    EXPECT_EQ(error, 0) << std::strerror(error);
    expect_whole_response(received, "HTTP/1.1 413 ", answer);
}

TEST(ForwardingTest, LastResponseBeforeRequestsSentAfterItArrivesWhole)
{
    // A client pipelines requests after one with `Connection: close`: the first two come
    // together, a third later, and it reads the large response slowly. Closed with the
    // third unread, the connection would be reset and the response's unsent end dropped;
    // portico shuts its side and reads the rest away first.
    const std::string answer = patterned(128 * 1024);
    origin backend([&answer](origin_connection& c) {
        while (auto req = c.read_request()) {
            c.write_raw(fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                    answer.size()));
            c.write_raw(answer);
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    ASSERT_TRUE(shrink_buffers(proxy, c));
    c.write_raw("GET /last HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n"
                "GET /after HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    c.write_raw("GET /later HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto [received, error] = read_slowly(c.socket.native_handle());
    EXPECT_EQ(error, 0) << std::strerror(error);
    expect_whole_response(received, "HTTP/1.1 200 ", answer);
}

TEST(ForwardingTest, BytesABackendSendsUnaskedDoNotReachTheNextRequest)
{
    // A backend that answers HEAD with a body, sent after the head: a pooled connection that
    // carries those bytes must not be reused, or the next request would read them as the
    // start of its response.
    std::atomic<bool> stray_sent{false};
    origin backend([&stray_sent](origin_connection& c) {
        for (;;) {
            auto req = c.read_request();
            if (!req) {
                return;
            }
            if (req->method() == beast::http::verb::head) {
                c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 36\r\n\r\n");
                std::this_thread::sleep_for(std::chrono::milliseconds(30));
                c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
                stray_sent = true;
            } else {
                c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
        }
    });
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    EXPECT_EQ(head_request(c, "/h").result_int(), 200);
    ASSERT_TRUE(wait_until([&stray_sent] { return stray_sent.load(); }));
    std::this_thread::sleep_for(std::chrono::milliseconds(20)); // let the bytes arrive
    auto res = c.get("app.localhost", "/next");
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "ok");
    EXPECT_EQ(backend.connections(), 2);
}

TEST(ForwardingTest, PooledConnectionTheBackendClosedWhileIdleIsNotUsed)
{
    // A backend that closes each connection after one response without saying so (as a dev
    // server with a short keep-alive timeout does): a POST, which cannot be replayed, must
    // go to a fresh connection rather than to the closed one and a 502.
    std::atomic<int> closed{0};
    origin backend([&closed](origin_connection& c) {
        if (auto req = c.read_request()) {
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
        boost::system::error_code ignored;
        c.socket.shutdown(net::socket_base::shutdown_both, ignored);
        ++closed;
    });
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/first").result_int(), 200);
    ASSERT_TRUE(wait_until([&closed] { return closed.load() == 1; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(20)); // let the FIN arrive
    c.write_raw("POST /once HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 4\r\n\r\nbody");
    auto res = c.read_response();
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "ok");
    EXPECT_EQ(backend.connections(), 2);
}

TEST(ForwardingTest, PoolKeepsAtMost64IdleConnectionsPerBackend)
{
    // 70 requests in flight at once need 70 backend connections; once they are answered,
    // 64 stay pooled and the other six are closed, so that a burst does not leave its peak
    // of connections (each with its buffers) open after it.
    constexpr int in_flight = 70;
    constexpr int pooled = 64;
    std::atomic<int> arrived{0};
    std::atomic<int> closed{0};
    origin backend([&](origin_connection& c) {
        if (!c.read_request()) {
            return;
        }
        ++arrived;
        wait_until([&arrived] { return arrived.load() >= in_flight; }); // bounded
        c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        if (!c.read_request()) {
            ++closed; // the proxy closed this connection instead of pooling it
        }
    });
    proxy_harness proxy("workers: 1\n" + route_to(backend.port())); // one worker, one pool
    std::vector<std::unique_ptr<client>> clients;
    for (int i = 0; i < in_flight; ++i) {
        clients.push_back(std::make_unique<client>(proxy.port()));
        clients.back()->write_raw("GET /burst HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    }
    for (auto& c : clients) {
        EXPECT_EQ(c->read_response().result_int(), 200);
    }
    EXPECT_EQ(backend.connections(), in_flight);
    EXPECT_TRUE(wait_until([&closed] { return closed.load() == in_flight - pooled; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(closed.load(), in_flight - pooled);
}

// Sends a request head that asks for 100-continue, then its body after the proxy's 100: the
// backend gets the request without Expect, and its answer comes back.
void expect_continue_is_answered(std::string_view head, std::string_view body)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    client c(proxy.port());
    c.write_raw(head);
    auto interim = c.read_response();
    EXPECT_EQ(interim.result_int(), 100);
    c.write_raw(body);
    auto res = c.read_response();
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "POST /e host=app.localhost body=5");
    ASSERT_EQ(backend.seen_requests().size(), 1U);
    EXPECT_EQ(backend.seen_requests().at(0).count(beast::http::field::expect), 0U);
}

TEST(ForwardingTest, ExpectContinueIsAnsweredAndBodyForwarded)
{
    expect_continue_is_answered("POST /e HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 5\r\n"
                                "Expect: 100-continue\r\n\r\n",
                                "hello");
}

// Field names in any letter case: Host routes, a chunked body is framed as such, and the
// first Expect line is the one answered.
TEST(ForwardingTest, HeaderNamesInAnyCaseFrameAndRouteTheRequest)
{
    expect_continue_is_answered("POST /e HTTP/1.1\r\nhost: app.localhost\r\n"
                                "transfer-encoding: CHUNKED\r\neXpEcT: 100-continue\r\n"
                                "Expect: \r\n\r\n",
                                "5\r\nhello\r\n0\r\n\r\n");
}

TEST(ForwardingTest, Http10ClientIsNotSentAnInterimResponse)
{
    // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client, which sends its body at once.
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    const auto raw = raw_exchange(proxy.port(),
                                  "POST /e HTTP/1.0\r\nHost: app.localhost\r\n"
                                  "Content-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
    EXPECT_TRUE(raw.starts_with("HTTP/1.0 200 OK\r\n")) << raw;
    EXPECT_EQ(raw.find(" 100 "), std::string::npos) << raw;
    EXPECT_TRUE(raw.ends_with("POST /e host=app.localhost body=5")) << raw;
    // Nor does the backend, which gets HTTP/1.1, act on an expectation it would honour.
    ASSERT_EQ(backend.seen_requests().size(), 1U);
    EXPECT_EQ(backend.seen_requests().at(0).count(beast::http::field::expect), 0U);
}

TEST(ForwardingTest, ChunkedResponseToHttp10ClientIsCloseDelimited)
{
    origin backend([](origin_connection& c) {
        if (!c.read_request()) {
            return;
        }
        c.write_raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n");
    });
    proxy_harness proxy(route_to(backend.port()));
    const auto raw =
        raw_exchange(proxy.port(), "GET / HTTP/1.0\r\nHost: app.localhost\r\n\r\n");
    EXPECT_TRUE(raw.starts_with("HTTP/1.0 200 OK\r\n")) << raw;
    EXPECT_EQ(raw.find("chunked"), std::string::npos) << raw;
    EXPECT_TRUE(raw.ends_with("\r\n\r\nabcdef")) << raw;
}

} // namespace
} // namespace portico::test
