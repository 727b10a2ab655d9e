// TLS on the shared port: certificates from the local CA on demand, real clients (curl,
// openssl s_client), passthrough by SNI, https backends, redirects and listener modes.

#include "support/origin.hpp"
#include "support/proxy_harness.hpp"

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace portico::test {
namespace {

namespace fs = std::filesystem;

/// A proxy whose CA lives in a directory the test can inspect.
struct tls_proxy {
    explicit tls_proxy(const std::string& routes, const std::string& extra = "")
        : ca_dir(dir.path() / "ca"),
          proxy(fmt::format("tls: {{ ca_dir: {} }}\n{}{}", ca_dir.string(), extra, routes))
    {
    }

    std::string url(std::string_view host, std::string_view path = "/") const
    {
        return fmt::format("https://{}:{}{}", host, proxy.port(), path);
    }
    std::string resolve(std::string_view host) const
    {
        return fmt::format("{}:{}:127.0.0.1", host, proxy.port());
    }

    temp_dir dir;
    fs::path ca_dir;
    proxy_harness proxy;
};

std::string routes_to(unsigned short port, std::initializer_list<std::string_view> hosts)
{
    std::string out = "routes:\n";
    for (auto h : hosts) {
        out += fmt::format("  - host: {}\n    to: 127.0.0.1:{}\n", h, port);
    }
    return out;
}

process_result curl_https(const tls_proxy& p, std::string_view host, std::string_view path = "/",
                          std::vector<std::string> extra = {})
{
    std::vector<std::string> argv{"curl", "-sS", "--cacert", (p.ca_dir / "ca.pem").string(),
                                  "--resolve", p.resolve(host)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(p.url(host, path));
    return run_process(argv);
}

/// `openssl s_client` with the given options; returns its output (stdin closed at once).
process_result s_client(unsigned short port, std::vector<std::string> options)
{
    std::vector<std::string> argv{"openssl", "s_client", "-connect",
                                  fmt::format("127.0.0.1:{}", port)};
    argv.insert(argv.end(), options.begin(), options.end());
    return run_process(argv, std::chrono::seconds(10));
}

/// The subjectAltName text of the certificate the server presents for `sni`.
std::string served_san(unsigned short port, const std::string& sni)
{
    auto shown = s_client(port, {"-servername", sni, "-showcerts"});
    const auto begin = shown.out.find("-----BEGIN CERTIFICATE-----");
    const auto end = shown.out.find("-----END CERTIFICATE-----");
    if (begin == std::string::npos || end == std::string::npos) {
        return {};
    }
    temp_dir d;
    std::ofstream(d.path() / "leaf.pem")
        << shown.out.substr(begin, end - begin + 25) << "\n";
    auto text = run_process({"openssl", "x509", "-in", (d.path() / "leaf.pem").string(),
                             "-noout", "-ext", "subjectAltName"});
    return text.out;
}

/// Completes a TLS handshake with `sni` on `stream`, over a connected socket.
void handshake_tls(net::ssl::stream<bounded_stream>& stream, const char* sni)
{
    SSL_set_tlsext_host_name(stream.native_handle(), sni);
    stream.handshake(net::ssl::stream_base::client);
}

/// A TLS connection to `port` with `sni`, its handshake done; it verifies the certificate
/// against `ca` when one is given, nothing otherwise.
struct tls_connection {
    tls_connection(unsigned short port, const char* sni, const fs::path& ca = {})
        : socket(connect_loopback(ctx, port)), stream(socket, client_context(ca))
    {
        handshake_tls(stream, sni);
    }

    net::ssl::context& client_context(const fs::path& ca)
    {
        if (!ca.empty()) {
            tls_ctx.load_verify_file(ca.string());
        }
        tls_ctx.set_verify_mode(ca.empty() ? net::ssl::verify_none : net::ssl::verify_peer);
        return tls_ctx;
    }

    /// Sends `GET target` for app.localhost on this connection and reads the response.
    response get(std::string_view target)
    {
        const auto request =
            fmt::format("GET {} HTTP/1.1\r\nHost: app.localhost\r\n\r\n", target);
        net::write(stream, net::buffer(request));
        response res;
        beast::http::read(stream, buffer, res);
        return res;
    }

    net::io_context ctx;
    net::ssl::context tls_ctx{net::ssl::context::tls_client};
    tcp::socket socket;
    net::ssl::stream<bounded_stream> stream;
    beast::flat_buffer buffer; ///< read and not yet parsed, for `get`
};

unsigned file_mode(const fs::path& p)
{
    struct stat st {};
    ::stat(p.c_str(), &st);
    return st.st_mode & 0777;
}

TEST(TlsTest, SamePortServesHttpAndHttpsForTwoHosts)
{
    origin backend;
    tls_proxy p(routes_to(backend.port(), {"app.localhost", "api.localhost"}));
    auto https_app = curl_https(p, "app.localhost", "/x");
    EXPECT_EQ(https_app.exit_code, 0) << https_app.err;
    EXPECT_EQ(https_app.out, "GET /x host=app.localhost:" + std::to_string(p.proxy.port()) +
                                 " body=0");
    auto https_api = curl_https(p, "api.localhost", "/y");
    EXPECT_EQ(https_api.exit_code, 0) << https_api.err;

    client c(p.proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/plain").result_int(), 200);

    EXPECT_NE(served_san(p.proxy.port(), "app.localhost").find("DNS:app.localhost"),
              std::string::npos);
    EXPECT_NE(served_san(p.proxy.port(), "api.localhost").find("DNS:api.localhost"),
              std::string::npos);

    const auto seen = backend.seen_requests();
    ASSERT_GE(seen.size(), 3U);
    EXPECT_EQ(seen[0]["X-Forwarded-Proto"], "https");
    EXPECT_EQ(seen[2]["X-Forwarded-Proto"], "http");
}

TEST(TlsTest, OnlyTls12And13AreAccepted)
{
    origin backend;
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}));
    // SECLEVEL=0 makes the client willing to offer the old versions; the server must refuse.
    for (const char* old : {"-tls1", "-tls1_1"}) {
        auto r = s_client(p.proxy.port(),
                          {old, "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "app.localhost"});
        EXPECT_EQ(r.out.find("Cipher is ECDHE"), std::string::npos) << old << r.out;
        EXPECT_NE(r.exit_code, 0) << old;
    }
    for (const char* modern : {"-tls1_2", "-tls1_3"}) {
        auto r = s_client(p.proxy.port(), {modern, "-servername", "app.localhost", "-CAfile",
                                           (p.ca_dir / "ca.pem").string()});
        EXPECT_NE(r.out.find("Verify return code: 0 (ok)"), std::string::npos) << modern << r.out;
    }
}

TEST(TlsTest, KeysArePrivateAndSurviveRestart)
{
    origin backend;
    temp_dir shared;
    const auto ca = shared.path() / "ca";
    const auto yaml = fmt::format("tls: {{ ca_dir: {} }}\n{}", ca.string(),
                                  routes_to(backend.port(), {"app.localhost"}));
    std::string first_serial;
    {
        proxy_harness proxy(yaml);
        auto r = s_client(proxy.port(), {"-servername", "app.localhost"});
        first_serial = r.out.substr(r.out.find("-----BEGIN CERTIFICATE-----"), 200);
    }
    EXPECT_EQ(file_mode(ca), 0700U);
    EXPECT_EQ(file_mode(ca / "ca-key.pem"), 0600U);
    std::string ca_before;
    std::getline(std::ifstream(ca / "ca.pem"), ca_before, '\0');
    for (const auto& entry : fs::recursive_directory_iterator(ca)) {
        if (entry.is_regular_file() && entry.path().string().find("key") != std::string::npos) {
            EXPECT_EQ(file_mode(entry.path()), 0600U) << entry.path();
        }
        EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
    }
    {
        proxy_harness proxy(yaml);
        auto r = s_client(proxy.port(), {"-servername", "app.localhost", "-showcerts"});
        EXPECT_EQ(r.out.substr(r.out.find("-----BEGIN CERTIFICATE-----"), 200), first_serial);
    }
    std::string ca_after;
    std::getline(std::ifstream(ca / "ca.pem"), ca_after, '\0');
    EXPECT_EQ(ca_before, ca_after);
}

TEST(TlsTest, UnroutedNameGetsAlertAndNothingIsWritten)
{
    origin backend;
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}));
    // A name no host has (a space, non-ASCII bytes) is refused the same way, not closed on.
    for (const std::string name :
         {"evil.localhost", "evil name.localhost", "evil\xc3\xa9.localhost"}) {
        auto r = s_client(p.proxy.port(), {"-servername", name});
        EXPECT_NE(r.err.find("unrecognized name"), std::string::npos) << name << r.err;
    }
    for (const auto& entry : fs::recursive_directory_iterator(p.ca_dir)) {
        EXPECT_EQ(entry.path().filename().string().find("evil"), std::string::npos);
    }
}

TEST(TlsTest, NoSniGetsLocalhostCertificate)
{
    origin backend;
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}));
    auto r = s_client(p.proxy.port(), {"-noservername", "-CAfile", (p.ca_dir / "ca.pem").string(),
                                       "-verify_ip", "127.0.0.1"});
    EXPECT_NE(r.out.find("Verify return code: 0 (ok)"), std::string::npos) << r.out;
}

TEST(TlsTest, UserCertificateWins)
{
    origin backend;
    temp_dir d;
    const auto cert = d.path() / "legacy.pem";
    const auto key = d.path() / "legacy-key.pem";
    auto made = run_process({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                             "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                             "/CN=user provided legacy", "-addext", "subjectAltName=DNS:legacy.test",
                             "-keyout", key.string(), "-out", cert.string()});
    ASSERT_EQ(made.exit_code, 0) << made.err;
    const auto yaml = fmt::format(
        "tls:\n  ca_dir: {}\n  certificates:\n    - hosts: [legacy.test]\n      cert: {}\n"
        "      key: {}\n{}",
        (d.path() / "ca").string(), cert.string(), key.string(),
        routes_to(backend.port(), {"legacy.test"}));
    proxy_harness proxy(yaml);
    auto r = s_client(proxy.port(), {"-servername", "legacy.test"});
    EXPECT_NE(r.out.find("user provided legacy"), std::string::npos) << r.out;
}

TEST(TlsTest, RedirectHttpsSends308)
{
    origin backend;
    tls_proxy p(fmt::format("routes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n"
                            "    redirect_https: true\n",
                            backend.port()));
    client c(p.proxy.port());
    auto res = c.get("app.localhost:" + std::to_string(p.proxy.port()), "/a?b=1");
    EXPECT_EQ(res.result_int(), 308);
    EXPECT_EQ(res[beast::http::field::location],
              fmt::format("https://app.localhost:{}/a?b=1", p.proxy.port()));
    auto https = curl_https(p, "app.localhost", "/a");
    EXPECT_EQ(https.out, fmt::format("GET /a host=app.localhost:{} body=0", p.proxy.port()));
}

TEST(TlsTest, RedirectOfARequestWithABodyEndsTheConnection)
{
    // The body is not read: kept open, the connection would read it as the next request
    // (here a smuggled GET the backend would have served).
    origin backend;
    tls_proxy p(fmt::format("routes:\n  - host: app.localhost\n    to: 127.0.0.1:{0}\n"
                            "    redirect_https: true\n"
                            "  - host: other.localhost\n    to: 127.0.0.1:{0}\n",
                            backend.port()));
    const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: other.localhost\r\n\r\n";
    const auto raw = raw_exchange(
        p.proxy.port(), fmt::format("POST /form HTTP/1.1\r\nHost: app.localhost\r\n"
                                    "Content-Length: {}\r\n\r\n{}",
                                    smuggled.size(), smuggled));
    EXPECT_TRUE(raw.starts_with("HTTP/1.1 308 ")) << raw;
    EXPECT_NE(raw.find("Connection: close"), std::string::npos) << raw;
    EXPECT_EQ(raw.find("HTTP/1.1 200"), std::string::npos) << raw;
    EXPECT_TRUE(backend.seen().empty());
    // Without a body the connection stays open for the next request.
    client c(p.proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/a").result_int(), 308);
    EXPECT_EQ(c.get("app.localhost", "/b").result_int(), 308);
}

TEST(TlsTest, ConnectionIdleAfterARedirectIsClosedAtOnceOnShutdown)
{
    origin backend;
    tls_proxy p(fmt::format("routes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n"
                            "    redirect_https: true\n",
                            backend.port()),
                "timeouts: { shutdown: 30s }\n");
    client c(p.proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/a").result_int(), 308);
    const auto start = std::chrono::steady_clock::now();
    p.proxy.stop();
    EXPECT_TRUE(p.proxy.wait_stopped(std::chrono::seconds(5)));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    EXPECT_TRUE(c.is_closed_by_peer());
}

/// A proxy with two listeners (`listen`) and a `redirect_https` route.
struct redirecting_proxy {
    explicit redirecting_proxy(const std::string& listen)
        : p(fmt::format("routes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n"
                        "    redirect_https: true\n",
                        backend.port()),
            listen),
          ports(p.proxy.ports())
    {
    }

    /// The Location of the 308 a plain GET of `path` gets on `ports[from]`.
    std::string location(std::size_t from, std::string_view path)
    {
        client c(ports.at(from));
        const auto res = c.get("app.localhost:" + std::to_string(ports.at(from)), path);
        EXPECT_EQ(res.result_int(), 308);
        return std::string(res[beast::http::field::location]);
    }

    origin backend;
    tls_proxy p;
    std::vector<unsigned short> ports;
};

TEST(TlsTest, RedirectHttpsFromATlsOffListenerGoesToOneThatServesTls)
{
    redirecting_proxy r("listen:\n  - address: 127.0.0.1:0\n    tls: off\n  - 127.0.0.1:0\n");
    ASSERT_EQ(r.ports.size(), 2U);
    EXPECT_EQ(r.location(0, "/x"), fmt::format("https://app.localhost:{}/x", r.ports[1]));
    // From the listener that serves both, the redirect stays on its port.
    EXPECT_EQ(r.location(1, "/y"), fmt::format("https://app.localhost:{}/y", r.ports[1]));
    // The dashboard links the route where the redirect goes.
    client c(r.ports[0]);
    const auto routes = c.get("portico.localhost", "/api/routes");
    EXPECT_NE(routes.body().find(fmt::format("\"url\":\"https://app.localhost:{}/\"", r.ports[1])),
              std::string::npos)
        << routes.body();
}

TEST(TlsTest, StuckRequestIsClosedAtTheShutdownDeadline)
{
    // Over TLS as over plain HTTP: at the deadline the request waiting for its backend is
    // closed with no page, and nothing more is waited for, not even the client's
    // close_notify (this client never sends one).
    origin backend(never_answers);
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}), "timeouts: { shutdown: 300ms }\n");
    tls_connection tls(p.proxy.port(), "app.localhost");
    const std::string request = "GET /stuck HTTP/1.1\r\nHost: app.localhost\r\n\r\n";
    net::write(tls.stream, net::buffer(request));
    ASSERT_TRUE(wait_until([&backend] { return backend.connections() == 1; }));
    const auto stop_time = std::chrono::steady_clock::now();
    p.proxy.stop();
    EXPECT_TRUE(p.proxy.wait_stopped(std::chrono::seconds(5)));
    EXPECT_LT(std::chrono::steady_clock::now() - stop_time, std::chrono::milliseconds(1500));
    std::array<char, 256> chunk{};
    boost::system::error_code ec;
    const auto n = tls.stream.read_some(net::buffer(chunk), ec);
    EXPECT_EQ(n, 0U) << std::string_view(chunk.data(), n);
    EXPECT_TRUE(ec) << "no end of the connection";
}

TEST(TlsTest, IdleTlsConnectionIsClosedAtOnceOnShutdown)
{
    // portico sends its close_notify and does not wait for the client's, which a client
    // waiting for its next request does not send: the shutdown is not held for it.
    origin backend;
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}), "timeouts: { shutdown: 30s }\n");
    tls_connection tls(p.proxy.port(), "app.localhost");
    ASSERT_EQ(tls.get("/a").result_int(), 200);
    const auto start = std::chrono::steady_clock::now();
    p.proxy.stop();
    EXPECT_TRUE(p.proxy.wait_stopped(std::chrono::seconds(5)));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1000));
    std::array<char, 64> chunk{};
    boost::system::error_code ec;
    tls.stream.read_some(net::buffer(chunk), ec);
    EXPECT_EQ(ec, net::error::eof) << ec.message(); // the close_notify came
}

TEST(TlsTest, KeepAliveConnectionWaitingThroughReloadsServesItsNextRequest)
{
    // A TLS connection waits for its next head inside the TLS stream, with the timeouts of
    // the configuration it started under: reloads meanwhile free that configuration unless
    // the wait holds it (the sanitizer build sees a read of freed memory otherwise).
    origin backend;
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}));
    tls_connection tls(p.proxy.port(), "app.localhost");
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(tls.get(fmt::format("/{}", i)).result_int(), 200) << i;
        // Two reloads, each with other timeouts, while the connection waits.
        for (const auto* header : {"3s", "4s"}) {
            ASSERT_TRUE(p.proxy
                            .reload(fmt::format("tls: {{ ca_dir: {} }}\ntimeouts: {{ header: {} }}\n{}",
                                                p.ca_dir.string(), header,
                                                routes_to(backend.port(), {"app.localhost"})))
                            .ok);
        }
    }
}

/// Counts the application-data records an SSL connection receives (TLS 1.3 inner type).
void count_application_records(int write_p, int, int content_type, const void* buf, std::size_t len,
                               SSL*, void* arg)
{
    if (write_p == 0 && content_type == SSL3_RT_INNER_CONTENT_TYPE && len == 1 &&
        *static_cast<const unsigned char*>(buf) == SSL3_RT_APPLICATION_DATA) {
        ++*static_cast<int*>(arg);
    }
}

TEST(TlsTest, ReframedChunksGoOutARecordEach)
{
    // A re-chunked body is written as a chunk's size line, its data and a CRLF: one TLS
    // record (and one system call) for the three, not one each. An event stream sends one
    // chunk per event.
    origin backend([](origin_connection& c) {
        if (c.read_request()) {
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n");
            for (int i = 0; i < 4; ++i) {
                c.write_raw("f\r\ndata: event " + std::to_string(i) + "\n\n\r\n");
                std::this_thread::sleep_for(std::chrono::milliseconds(30));
            }
            c.write_raw("0\r\n\r\n");
        }
    });
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}));
    tls_connection tls(p.proxy.port(), "app.localhost");
    int records = 0;
    ::SSL_set_msg_callback(tls.stream.native_handle(), count_application_records);
    ::SSL_set_msg_callback_arg(tls.stream.native_handle(), &records);
    const auto res = tls.get("/events");
    ASSERT_EQ(res.result_int(), 200);
    EXPECT_NE(res.body().find("data: event 3"), std::string::npos) << res.body();
    // The head, four events and the last chunk: six writes at most (a write may find the
    // next event already there and take both).
    EXPECT_LE(records, 6);
    EXPECT_GE(records, 2);
}

TEST(TlsTest, UploadEchoedAsItIsSentComesBackWholeOverTls)
{
    // The body's relay reads the client's TLS stream while the answer is written to it.
    origin backend(echo_body);
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}));
    const auto in = p.dir.path() / "in.bin";
    const auto out = p.dir.path() / "out.bin";
    {
        std::ofstream file(in, std::ios::binary);
        for (int i = 0; i < 20 * 1024; ++i) {
            file << fmt::format("{:0>1023}\n", i); // 20 MiB, each KiB different
        }
    }
    const auto r = curl_https(p, "app.localhost", "/echo",
                              {"--data-binary", "@" + in.string(), "-o", out.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::ifstream sent(in, std::ios::binary);
    std::ifstream received(out, std::ios::binary);
    const std::string a((std::istreambuf_iterator<char>(sent)), std::istreambuf_iterator<char>());
    const std::string b((std::istreambuf_iterator<char>(received)),
                        std::istreambuf_iterator<char>());
    EXPECT_EQ(a.size(), std::size_t{20} * 1024 * 1024);
    EXPECT_TRUE(a == b) << b.size();
}

TEST(TlsTest, BodyCutByTheBackendEndsWithoutCloseNotify)
{
    // An HTTP/1.0 client's body ends with the connection: over TLS, the close_notify would
    // tell it the body is whole. When the backend broke off, none is sent.
    origin backend([](origin_connection& c) {
        if (c.read_request()) {
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial");
            c.socket.set_option(net::socket_base::linger(true, 0)); // a reset, not a close
        }
    });
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}));
    tls_connection tls(p.proxy.port(), "app.localhost");
    const std::string request = "GET /cut HTTP/1.0\r\nHost: app.localhost\r\n\r\n";
    net::write(tls.stream, net::buffer(request));
    std::string received;
    std::array<char, 4096> chunk{};
    boost::system::error_code ec;
    for (int i = 0; i < 100 && !ec; ++i) {
        received.append(chunk.data(), tls.stream.read_some(net::buffer(chunk), ec));
    }
    EXPECT_TRUE(received.ends_with("partial")) << received;
    EXPECT_NE(ec, net::error::eof) << "a close_notify made the cut body look whole";
    EXPECT_TRUE(ec) << "no end of the connection";
}

TEST(TlsTest, RedirectHttpsGoesToTheTlsOnlyListener)
{
    redirecting_proxy r("listen:\n  - 127.0.0.1:0\n  - address: 127.0.0.1:0\n    tls: only\n");
    ASSERT_EQ(r.ports.size(), 2U);
    EXPECT_EQ(r.location(0, "/x"), fmt::format("https://app.localhost:{}/x", r.ports[1]));
}

TEST(TlsTest, PlainRequestOnASecondTlsOnlyListenerIsToldItsOwnPort)
{
    origin backend;
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}),
                "listen:\n  - address: 127.0.0.1:0\n    tls: only\n"
                "  - address: 127.0.0.1:0\n    tls: only\n");
    const auto ports = p.proxy.ports();
    ASSERT_EQ(ports.size(), 2U);
    const auto raw = raw_exchange(ports[1], "GET http://app.localhost/x?y=1 HTTP/1.1\r\n"
                                            "Host: app.localhost\r\nAccept: application/json\r\n\r\n");
    EXPECT_NE(raw.find(fmt::format("use https://app.localhost:{}/x?y=1 instead", ports[1])),
              std::string::npos)
        << raw;
}

TEST(TlsTest, TlsOnlyListenerRefusesPlainHttp)
{
    origin backend;
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}),
                "listen:\n  - address: 127.0.0.1:0\n    tls: only\n");
    client c(p.proxy.port());
    auto res = c.get("app.localhost", "/");
    EXPECT_EQ(res.result_int(), 400);
    EXPECT_EQ(res["X-Portico-Error"], "tls_required");
    EXPECT_TRUE(backend.seen().empty());
    EXPECT_EQ(curl_https(p, "app.localhost").exit_code, 0);
}

TEST(TlsTest, TlsOffListenerClosesOnClientHello)
{
    origin backend;
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}),
                "listen:\n  - address: 127.0.0.1:0\n    tls: off\n");
    auto r = curl_https(p, "app.localhost");
    EXPECT_NE(r.exit_code, 0);
    client c(p.proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/").result_int(), 200);
}

TEST(TlsTest, TwoListenersOnPortZeroKeepTheirModesThroughAReload)
{
    // Both are written "127.0.0.1:0"; a reload matched them by that text, and the second's
    // tls: off ended up on both.
    origin backend;
    const std::string listen = "listen:\n  - 127.0.0.1:0\n  - address: 127.0.0.1:0\n    tls: off\n";
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}), listen);
    ASSERT_EQ(curl_https(p, "app.localhost").exit_code, 0);
    const auto result = p.proxy.reload(fmt::format("tls: {{ ca_dir: {} }}\n{}{}",
                                                   p.ca_dir.string(), listen,
                                                   routes_to(backend.port(), {"app.localhost"})));
    ASSERT_TRUE(result.ok) << result.message;
    EXPECT_EQ(curl_https(p, "app.localhost").exit_code, 0) << "tls: auto lost its TLS";
    const auto ports = p.proxy.ports();
    ASSERT_EQ(ports.size(), 2u);
    EXPECT_NE(run_process({"curl", "-sS", "-k", "--max-time", "5",
                           fmt::format("https://127.0.0.1:{}/", ports[1])})
                  .exit_code,
              0)
        << "tls: off took TLS";
}

TEST(TlsTest, SecureWebSocketThroughTunnel)
{
    origin backend(websocket_echo);
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}));
    net::io_context ctx;
    net::ssl::context tls_ctx(net::ssl::context::tls_client);
    tls_ctx.load_verify_file((p.ca_dir / "ca.pem").string());
    tls_ctx.set_verify_mode(net::ssl::verify_peer);
    auto socket = connect_loopback(ctx, p.proxy.port());
    beast::websocket::stream<net::ssl::stream<bounded_stream>> ws(socket, tls_ctx);
    SSL_set_tlsext_host_name(ws.next_layer().native_handle(), "app.localhost");
    ws.next_layer().set_verify_callback(net::ssl::host_name_verification("app.localhost"));
    ws.next_layer().handshake(net::ssl::stream_base::client);
    ws.handshake("app.localhost", "/ws");
    beast::flat_buffer buffer;
    for (int i = 0; i < 100; ++i) {
        const auto message = fmt::format("secure {}", i);
        ws.write(net::buffer(message));
        ws.read(buffer);
        ASSERT_EQ(beast::buffers_to_string(buffer.data()), message);
        buffer.consume(buffer.size());
    }
}

TEST(TlsTest, ErrorPageEndsWithCloseNotify)
{
    // An error page ends the connection: over TLS the client is told so (close_notify), so
    // the end reads as the end, not as a truncation.
    origin backend;
    tls_proxy p(routes_to(backend.port(), {"app.localhost"}));
    tls_connection tls(p.proxy.port(), "app.localhost", p.ca_dir / "ca.pem");
    const std::string request = "GET / HTTP/1.1\r\nHost: nowhere.localhost\r\n\r\n";
    net::write(tls.stream, net::buffer(request));
    beast::flat_buffer buffer;
    beast::http::response<beast::http::string_body> res;
    beast::http::read(tls.stream, buffer, res);
    EXPECT_EQ(res.result_int(), 404);
    boost::system::error_code ec;
    std::array<char, 64> rest{};
    tls.stream.read_some(net::buffer(rest), ec);
    EXPECT_EQ(ec, net::error::eof) << ec.message();
}

/// Handshakes with `sni` over a socket, writing the first flight in `piece`-byte segments
/// (each its own TCP segment), and returns the peer certificate's subject CN.
std::string handshake_fragmented(unsigned short port, const std::string& sni, std::size_t piece)
{
    net::io_context ctx;
    tcp::socket socket(ctx);
    socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    socket.set_option(tcp::no_delay(true));
    bound_socket_waits(socket.native_handle());
    bounded_stream stream(socket);
    SSL_CTX* raw_ctx = SSL_CTX_new(TLS_client_method());
    SSL* ssl = SSL_new(raw_ctx);
    BIO* in = BIO_new(BIO_s_mem());
    BIO* out = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, in, out);
    SSL_set_tlsext_host_name(ssl, sni.c_str());
    SSL_set_connect_state(ssl);
    bool first_flight = true;
    std::string subject;
    for (int round = 0; round < 50; ++round) {
        const int rc = SSL_do_handshake(ssl);
        std::array<char, 16384> chunk{};
        int pending = 0;
        while ((pending = BIO_read(out, chunk.data(), static_cast<int>(chunk.size()))) > 0) {
            const std::string_view bytes(chunk.data(), static_cast<std::size_t>(pending));
            for (std::size_t at = 0; at < bytes.size();
                 at += first_flight ? piece : bytes.size()) {
                net::write(stream, net::buffer(bytes.substr(at, first_flight ? piece
                                                                             : bytes.size())));
                if (first_flight) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(2));
                }
            }
            first_flight = false;
        }
        if (rc == 1) {
            if (X509* peer = SSL_get1_peer_certificate(ssl)) {
                char name[256] = {};
                X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, name,
                                          sizeof(name));
                subject = name;
                X509_free(peer);
            }
            break;
        }
        if (SSL_get_error(ssl, rc) != SSL_ERROR_WANT_READ) {
            break;
        }
        boost::system::error_code ec;
        const auto n = stream.read_some(net::buffer(chunk), ec);
        if (ec) {
            break;
        }
        BIO_write(in, chunk.data(), static_cast<int>(n));
    }
    SSL_free(ssl);
    SSL_CTX_free(raw_ctx);
    return subject;
}

/// A TLS backend serving a self-signed certificate of its own for `name`.
/// A route from `host` to an https backend at `backend_host`:`port` that is not verified.
std::string unverified_route(std::string_view host, std::string_view backend_host,
                             unsigned short port)
{
    return fmt::format("routes:\n  - host: {}\n    to: https://{}:{}\n"
                       "    insecure_skip_verify: true\n",
                       host, backend_host, port);
}

struct self_signed_origin {
    self_signed_origin(const std::string& name, const std::string& common_name,
                       tls_origin::options opts = {})
        : made(make_self_signed(dir.path() / "cert.pem", dir.path() / "key.pem", name,
                                common_name, error)),
          server(dir.path() / "cert.pem", dir.path() / "key.pem", opts)
    {
    }
    unsigned short port() const noexcept { return server.port(); }

    temp_dir dir;
    std::string error;
    bool made;
    tls_origin server;
};

/// `db.localhost` passed through to a backend with its own certificate, `app.localhost`
/// terminated and forwarded to `web`.
struct passthrough_and_terminated {
    explicit passthrough_and_terminated(const std::string& extra = "")
        : p(fmt::format("routes:\n  - host: db.localhost\n    tls_passthrough: true\n"
                        "    to: 127.0.0.1:{}\n  - host: app.localhost\n    to: 127.0.0.1:{}\n",
                        backend.port(), web.port()),
            extra)
    {
    }

    self_signed_origin backend{"db.localhost", "backend own certificate"};
    origin web;
    tls_proxy p;
};

TEST(TlsPassthroughTest, RawStreamReachesBackendCertificateEvenFragmented)
{
    passthrough_and_terminated setup;
    ASSERT_TRUE(setup.backend.made) << setup.backend.error;
    auto& p = setup.p;
    auto shown = s_client(p.proxy.port(), {"-servername", "db.localhost"});
    EXPECT_NE(shown.out.find("backend own certificate"), std::string::npos) << shown.out;

    auto via_curl = run_process({"curl", "-sS", "-k", "--resolve", p.resolve("db.localhost"),
                                 p.url("db.localhost", "/q")});
    EXPECT_EQ(via_curl.out, "tls-backend GET /q") << via_curl.err;

    EXPECT_EQ(handshake_fragmented(p.proxy.port(), "db.localhost", 7), "backend own certificate");
    // The other names on the port are still terminated by portico.
    EXPECT_EQ(handshake_fragmented(p.proxy.port(), "app.localhost", 7), "app.localhost");

    client plain(p.proxy.port());
    auto res = plain.get("db.localhost", "/");
    EXPECT_EQ(res.result_int(), 400);
    EXPECT_EQ(res["X-Portico-Error"], "tls_required");
}

TEST(TlsPassthroughTest, PlainOrMisnamedRequestsForThePassthroughHostAreToldWhereItIs)
{
    passthrough_and_terminated setup("listen:\n  - address: 127.0.0.1:0\n    tls: off\n  - 127.0.0.1:0\n");
    ASSERT_TRUE(setup.backend.made) << setup.backend.error;
    const auto ports = setup.p.proxy.ports();
    ASSERT_EQ(ports.size(), 2U);
    const auto message = [](const response& res) {
        EXPECT_EQ(res.result_int(), 400);
        EXPECT_EQ(res["X-Portico-Error"], "tls_required");
        return res.body(); // JSON: the message needs no escaping
    };
    const std::vector<std::pair<std::string, std::string>> json = {{"Accept", "application/json"}};
    // On the tls: off listener: the port that serves TLS, not this one.
    client off(ports[0]);
    const auto from_off = message(off.get("db.localhost", "/q", json));
    EXPECT_NE(from_off.find(fmt::format("use https://db.localhost:{}/q", ports[1])),
              std::string::npos)
        << from_off;
    EXPECT_EQ(from_off.find("only serves HTTPS"), std::string::npos) << from_off;
    client both(ports[1]);
    const auto from_both = message(both.get("db.localhost", "/q", json));
    EXPECT_NE(from_both.find(fmt::format("use https://db.localhost:{}/q", ports[1])),
              std::string::npos)
        << from_both;
    // Over TLS opened for another name, "use https" would not help: the handshake's name
    // picks a passthrough route.
    const auto via_curl = run_process(
        {"curl", "-sS", "-k", "-H", "Host: db.localhost", "-H", "Accept: application/json",
         "--resolve", fmt::format("app.localhost:{}:127.0.0.1", ports[1]),
         fmt::format("https://app.localhost:{}/q", ports[1])});
    EXPECT_NE(via_curl.out.find("handshake named another host or none"), std::string::npos)
        << via_curl.out << via_curl.err;
}

TEST(TlsPassthroughTest, OpenTunnelGetsTheShutdownGracePeriod)
{
    self_signed_origin backend("db.localhost", "backend own certificate");
    ASSERT_TRUE(backend.made) << backend.error;
    tls_proxy p(fmt::format("routes:\n  - host: db.localhost\n    tls_passthrough: true\n"
                            "    to: 127.0.0.1:{}\n",
                            backend.port()),
                "timeouts: { shutdown: 30s }\n");
    tls_connection tls(p.proxy.port(), "db.localhost");

    // Shutdown stops accepting but lets the open tunnel carry a whole exchange...
    p.proxy.stop();
    const std::string request = "GET /late HTTP/1.1\r\nHost: db.localhost\r\n\r\n";
    net::write(tls.stream, net::buffer(request));
    beast::flat_buffer buffer;
    response res;
    beast::http::read(tls.stream, buffer, res);
    EXPECT_EQ(res.body(), "tls-backend GET /late");
    // ...and ends as soon as the tunnel does, not at `timeouts.shutdown`.
    const auto start = std::chrono::steady_clock::now();
    boost::system::error_code ignored;
    tls.socket.shutdown(tcp::socket::shutdown_both, ignored);
    tls.socket.close(ignored);
    EXPECT_TRUE(p.proxy.wait_stopped(std::chrono::seconds(5)));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST(TlsPassthroughTest, MalformedHelloIsClosed)
{
    origin web;
    tls_proxy p(routes_to(web.port(), {"app.localhost"}));
    const std::string garbage = std::string("\x16\x03\x01\x00\x05", 5) + "hello";
    EXPECT_TRUE(raw_exchange(p.proxy.port(), garbage).empty());
    client c(p.proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/").result_int(), 200);
}

TEST(TlsBackendTest, HttpsBackendVerifiedOrSkipped)
{
    self_signed_origin backend("localhost", "self signed backend");
    ASSERT_TRUE(backend.made) << backend.error;
    tls_proxy p(fmt::format("routes:\n"
                            "  - host: strict.localhost\n    to: https://localhost:{0}\n"
                            "  - host: loose.localhost\n    to: https://localhost:{0}\n"
                            "    insecure_skip_verify: true\n",
                            backend.port()));
    client c(p.proxy.port());
    auto strict = c.get("strict.localhost", "/s", {{"Accept", "application/json"}});
    EXPECT_EQ(strict.result_int(), 502);
    EXPECT_EQ(strict["X-Portico-Error"], "upstream_tls");
    EXPECT_NE(strict.body().find("insecure_skip_verify"), std::string::npos) << strict.body();
    client l(p.proxy.port());
    auto loose = l.get("loose.localhost", "/l");
    EXPECT_EQ(loose.result_int(), 200);
    EXPECT_EQ(loose.body(), "tls-backend GET /l");
    EXPECT_EQ(l.get("loose.localhost", "/again").body(), "tls-backend GET /again");
}

TEST(TlsBackendTest, PlainBackendBehindHttpsIsNotBlamedOnVerification)
{
    origin plain;
    tls_proxy p(unverified_route("app.localhost", "127.0.0.1", plain.port()));
    client c(p.proxy.port());
    const auto res = c.get("app.localhost", "/", {{"Accept", "application/json"}});
    EXPECT_EQ(res.result_int(), 502);
    EXPECT_EQ(res["X-Portico-Error"], "upstream_tls");
    EXPECT_NE(res.body().find("needs http:// in the route's `to`"), std::string::npos)
        << res.body();
    EXPECT_EQ(res.body().find("set insecure_skip_verify"), std::string::npos) << res.body();
}

TEST(TlsBackendTest, BackendAskingForAClientCertificateIsATlsFailureNotTheCertificates)
{
    // portico sends no client certificate. Under TLS 1.2 the backend refuses the handshake;
    // under TLS 1.3 it says so with an alert after the handshake, at the first read. Neither
    // is an invalid response, and with verification off neither is the certificate's fault.
    for (const bool tls12 : {true, false}) {
        self_signed_origin backend("localhost", "asks for a client certificate",
                                   {.require_client_certificate = true, .tls12_only = tls12});
        ASSERT_TRUE(backend.made) << backend.error;
        tls_proxy p(unverified_route("app.localhost", "localhost", backend.port()));
        client c(p.proxy.port());
        const auto res = c.get("app.localhost", "/", {{"Accept", "application/json"}});
        EXPECT_EQ(res.result_int(), 502) << tls12;
        EXPECT_EQ(res["X-Portico-Error"], "upstream_tls") << tls12 << res.body();
        EXPECT_EQ(res.body().find("set insecure_skip_verify"), std::string::npos)
            << tls12 << res.body();
    }
}

TEST(TlsBackendTest, UploadsToHttpsBackendKeepThePooledConnectionUsable)
{
    // A body larger than what comes with the head is sent while a read waits on the TLS
    // backend for an early answer; that read is cancelled once the body is out, and the
    // connection must still carry the response and the requests after it.
    self_signed_origin backend("localhost", "self signed backend");
    ASSERT_TRUE(backend.made) << backend.error;
    tls_proxy p(unverified_route("up.localhost", "localhost", backend.port()));
    client c(p.proxy.port());
    for (int i = 0; i < 3; ++i) {
        request req{beast::http::verb::post, "/upload" + std::to_string(i), 11};
        req.set(beast::http::field::host, "up.localhost");
        req.body() = std::string(512 * 1024 + i, 'u');
        req.prepare_payload();
        auto res = c.send(req);
        EXPECT_EQ(res.result_int(), 200) << i;
        EXPECT_EQ(res.body(), "tls-backend POST /upload" + std::to_string(i));
        EXPECT_EQ(c.get("up.localhost", "/after").body(), "tls-backend GET /after") << i;
    }
}

TEST(TlsBackendTest, BytesAnHttpsBackendSentUnaskedNeverReachTheNextRequest)
{
    // The unasked response arrives in the same read as the one asked for, so it is in
    // OpenSSL's buffers, not on the socket, when the connection is pooled.
    self_signed_origin backend("localhost", "self signed backend");
    ASSERT_TRUE(backend.made) << backend.error;
    tls_proxy p(unverified_route("up.localhost", "localhost", backend.port()));
    for (int i = 0; i < 3; ++i) {
        {
            client c(p.proxy.port());
            EXPECT_EQ(c.get("up.localhost", "/then-unasked").body(),
                      "tls-backend GET /then-unasked");
        }
        client next(p.proxy.port());
        const auto res = next.get("up.localhost", "/innocent");
        EXPECT_EQ(res.result_int(), 200) << i;
        EXPECT_EQ(res.body(), "tls-backend GET /innocent") << i;
    }
}

} // namespace
} // namespace portico::test
