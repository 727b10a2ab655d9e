// The built binary as users run it: `portico run` on a file, real signals, real curl, and
// memory measured from /proc while gigabytes stream through.

#include "support/child.hpp"
#include "support/descriptor_limit.hpp"
#include "support/name_server.hpp"
#include "support/origin.hpp"
#include "support/portico_process.hpp"
#include "support/process.hpp"
#include "unit/tls/tls_test_support.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>
#include <cstdio>
#include <fstream>
#include <regex>

namespace portico::test {
namespace {

#if defined(PORTICO_SANITIZE)
// Sanitized code moves bytes an order of magnitude slower; a quarter of the volume still
// runs the same streaming paths many thousand times.
constexpr std::uint64_t gib = 256ULL * 1024 * 1024;
#else
constexpr std::uint64_t gib = 1024ULL * 1024 * 1024;
#endif
constexpr std::size_t chunk_size = 64 * 1024;

/// A backend that serves `/bytes/N` as N zero bytes and counts uploaded bodies streaming.
void bulk_backend(origin_connection& c)
{
    for (;;) {
        beast::http::request_parser<beast::http::buffer_body> parser;
        if (!read_streamed_head(c, parser)) {
            return;
        }
        std::uint64_t received = 0;
        const auto count = [&received](std::string_view piece) { received += piece.size(); };
        if (!read_body_in_pieces(c, parser, chunk_size, count)) {
            return;
        }
        const std::string target(parser.get().target());
        if (target.starts_with("/bytes/")) {
            const auto total = std::stoull(target.substr(7));
            c.write_raw(fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", total));
            const std::vector<char> zeros(chunk_size, 0);
            for (std::uint64_t sent = 0; sent < total;) {
                const auto n = std::min<std::uint64_t>(chunk_size, total - sent);
                c.write_raw(std::string_view(zeros.data(), n));
                sent += n;
            }
        } else {
            const auto body = std::to_string(received);
            c.write_raw(fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                                    body.size(), body));
        }
    }
}

TEST(BinaryTest, GibibyteTransfersKeepRssBounded)
{
    origin backend(bulk_backend);
    running_portico portico(route_to(backend.port()));
    const auto url = fmt::format("http://127.0.0.1:{}", portico.port);

    // Download 1 GiB as fast as the client reads.
    auto down = run_process({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                             "-H", "Host: app.localhost", url + "/bytes/" + std::to_string(gib)},
                            std::chrono::seconds(120));
    EXPECT_EQ(down.out, fmt::format("200 {}", gib)) << down.err;

    // A slow reader: the proxy must stop reading from the backend rather than buffer.
    auto slow = run_process({"curl", "-sS", "-o", "/dev/null", "--limit-rate", "40M", "-w",
                             "%{http_code} %{size_download}", "-H", "Host: app.localhost",
                             url + "/bytes/" + std::to_string(gib / 4)},
                            std::chrono::seconds(120));
    EXPECT_EQ(slow.out, fmt::format("200 {}", gib / 4)) << slow.err;

    // Upload 1 GiB chunked; the backend counts what arrives.
    {
        client c(portico.port);
        bound_socket_waits(c.socket.native_handle(), std::chrono::seconds(60));
        c.write_raw("POST /upload HTTP/1.1\r\nHost: app.localhost\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n");
        const std::string chunk = fmt::format("{:x}\r\n", chunk_size) +
                                  std::string(chunk_size, 'u') + "\r\n";
        for (std::uint64_t sent = 0; sent < gib; sent += chunk_size) {
            c.write_raw(chunk);
        }
        c.write_raw("0\r\n\r\n");
        auto res = c.read_response();
        EXPECT_EQ(res.body(), std::to_string(gib));
    }

    const auto peak = portico.process->peak_rss_kib();
    RecordProperty("peak_rss_kib", std::to_string(peak));
    std::printf("portico peak RSS after the transfers: %ld KiB\n", peak);
#if defined(PORTICO_SANITIZE)
    // Sanitizer shadow memory and quarantine make RSS meaningless there; the Release run
    // of this test holds the bound.
    EXPECT_GT(peak, 0);
#else
    EXPECT_LT(peak, 64 * 1024) << "peak RSS " << peak << " KiB";
#endif
    portico.process->signal(SIGTERM);
    EXPECT_EQ(portico.process->wait(), 0);
}

TEST(BinaryTest, OpenSslThatCannotMakeAContextStopsTheStartWithAnError)
{
    // An openssl.cnf that leaves no cipher (here: a provider section naming nothing) makes
    // every TLS context fail. The start says so and exits 3, whichever thread meets it first
    // (OpenSSL is first used on a thread of its own while the configuration is read).
    temp_dir dir;
    const auto cnf = dir.path() / "openssl.cnf";
    const auto yaml = dir.path() / "portico.yaml";
    {
        std::ofstream(cnf) << "openssl_conf = openssl_init\n[openssl_init]\nproviders = prov\n"
                              "[prov]\nnothing = nothing_sect\n[nothing_sect]\nactivate = 1\n";
        std::ofstream(yaml) << fmt::format("listen:\n  - 127.0.0.1:0\ntls:\n  ca_dir: {}\n"
                                           "routes:\n  - host: app.localhost\n"
                                           "    to: 127.0.0.1:9\n",
                                           (dir.path() / "ca").string());
    }
    const auto r =
        run_process({PORTICO_BINARY, "run", "-c", yaml.string()}, dir.path(),
                    child_environment({{"OPENSSL_CONF", cnf.string()}}), std::chrono::seconds(15));
    EXPECT_EQ(r.signal, 0) << r;
    EXPECT_EQ(r.exit_code, 3) << r;
    EXPECT_NE(r.err.find("TLS setup failed"), std::string::npos) << r;
}

TEST(BinaryTest, ContextsMadeAheadAnswerClientsAndReachHttpsBackends)
{
    // `portico run` makes its TLS contexts on a thread of its own while the configuration is
    // read, and the certificate manager takes them: the server's must answer a browser, the
    // client's must reach an https backend.
    temp_dir certs;
    std::string error;
    ASSERT_TRUE(make_self_signed(certs.path() / "cert.pem", certs.path() / "key.pem", "localhost",
                                 "backend", error))
        << error;
    tls_origin backend(certs.path() / "cert.pem", certs.path() / "key.pem");
    running_portico portico(fmt::format("routes:\n  - host: app.localhost\n"
                                        "    to: https://localhost:{}\n"
                                        "    insecure_skip_verify: true\n",
                                        backend.port()));
    const auto r =
        run_process({"curl", "-sS", "--cacert", (portico.ca_dir() / "ca.pem").string(), "--resolve",
                     fmt::format("app.localhost:{}:127.0.0.1", portico.port),
                     fmt::format("https://app.localhost:{}/both-sides", portico.port)});
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_EQ(r.out, "tls-backend GET /both-sides") << r;
}

TEST(BinaryTest, BusyTunnelEndsAtTheShutdownDeadline)
{
    // The backend floods the tunnel and never reads; the client floods it and reads all.
    // At the deadline both directions must end, though one of them always has a completed
    // operation waiting to run, which a cancel does not reach.
    origin backend([](origin_connection& c) {
        if (!c.read_request()) {
            return;
        }
        c.write_raw("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                    "Upgrade: test\r\n\r\n");
        const std::string chunk(64 * 1024, 'f');
        boost::system::error_code ec;
        for (int i = 0; i < 200000 && !ec; ++i) {
            net::write(c.stream, net::buffer(chunk), ec);
        }
    });
    running_portico portico("timeouts: { shutdown: 1s }\n" + route_to(backend.port()));
    net::io_context ctx;
    auto socket = connect_loopback(ctx, portico.port);
    net::write(socket, net::buffer(std::string_view(
                           "GET /ws HTTP/1.1\r\nHost: app.localhost\r\nConnection: Upgrade\r\n"
                           "Upgrade: test\r\n\r\n")));
    std::atomic<bool> stop{false};
    std::thread client([&] {
        const std::string out(64 * 1024, 'c');
        std::array<char, 64 * 1024> in{};
        const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (!stop && std::chrono::steady_clock::now() < limit) {
            pollfd p{socket.native_handle(), POLLIN | POLLOUT, 0};
            if (::poll(&p, 1, 500) <= 0) {
                continue;
            }
            if ((p.revents & POLLIN) != 0 &&
                ::recv(socket.native_handle(), in.data(), in.size(), MSG_DONTWAIT) == 0) {
                return;
            }
            if ((p.revents & POLLOUT) != 0) {
                ::send(socket.native_handle(), out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            }
            if ((p.revents & (POLLERR | POLLHUP)) != 0) {
                return;
            }
        }
    });
    std::this_thread::sleep_for(std::chrono::seconds(2));
    portico.process->signal(SIGTERM);
    const auto signalled = std::chrono::steady_clock::now();
    EXPECT_EQ(portico.process->wait(std::chrono::seconds(6)), 0);
    EXPECT_LT(std::chrono::steady_clock::now() - signalled, std::chrono::seconds(3));
    stop = true;
    client.join();
}

TEST(BinaryTest, SecondSignalEndsTheShutdownsGracePeriod)
{
    // A second Ctrl-C does not wait out timeouts.shutdown for a request that hangs.
    std::atomic<bool> got_request{false};
    origin backend([&got_request](origin_connection& c) {
        if (c.read_request()) {
            got_request = true;
            never_answers(c);
        }
    });
    running_portico portico("timeouts: { shutdown: 60s }\n" + route_to(backend.port()));
    client c(portico.port);
    c.write_raw("GET /stuck HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    ASSERT_TRUE(wait_until([&got_request] { return got_request.load(); }));
    portico.process->signal(SIGINT);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // A reload asked for meanwhile is skipped, not reported as failed.
    portico.process->signal(SIGHUP);
    EXPECT_TRUE(portico.process->wait_for_line("reload: portico is shutting down",
                                               std::chrono::seconds(5)));
    const auto second = std::chrono::steady_clock::now();
    portico.process->signal(SIGINT);
    EXPECT_EQ(portico.process->wait(std::chrono::seconds(10)), 0);
    EXPECT_LT(std::chrono::steady_clock::now() - second, std::chrono::seconds(5));
    EXPECT_TRUE(portico.process->wait_for_line("shutdown_forced", std::chrono::seconds(1)))
        << "the cut is counted in a warning";
    for (const auto& line : portico.process->lines()) {
        EXPECT_EQ(line.find("failed"), std::string::npos) << line;
    }
}

TEST(BinaryTest, ConnectionsClosedAtTheShutdownDeadlineAreCountedInOneWarning)
{
    // Two workers share the connections; the warning counts them all, once.
    std::atomic<int> waiting{0};
    origin backend([&waiting](origin_connection& c) {
        if (c.read_request()) {
            ++waiting;
            never_answers(c);
        }
    });
    temp_dir dir;
    const auto file = dir.path() / "portico.yaml";
    std::ofstream(file) << fmt::format("listen: [127.0.0.1:0]\nworkers: 2\ntls: {{ ca_dir: {} }}\n"
                                       "timeouts: {{ shutdown: 300ms }}\n{}",
                                       (dir.path() / "ca").string(), route_to(backend.port()));
    child process({PORTICO_BINARY, "run", "-c", file.string()});
    const auto ready = process.wait_for_line("portico ready:");
    ASSERT_TRUE(ready);
    const auto port = port_from_ready_line(*ready);
    std::vector<std::unique_ptr<client>> clients;
    for (int i = 0; i < 4; ++i) {
        clients.push_back(std::make_unique<client>(port));
        clients.back()->write_raw("GET /stuck HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    }
    ASSERT_TRUE(wait_until([&waiting] { return waiting.load() == 4; }));
    process.signal(SIGTERM);
    EXPECT_EQ(process.wait(), 0);
    process.wait_for_line("\x01", std::chrono::milliseconds(300)); // reads what is left
    std::vector<std::string> warnings;
    for (const auto& line : process.lines()) {
        if (line.find("shutdown_timeout") != std::string::npos) {
            warnings.push_back(line);
        }
    }
    ASSERT_EQ(warnings.size(), 1U) << fmt::format("{}", fmt::join(warnings, "\n"));
    EXPECT_NE(warnings[0].find("closed_connections=4"), std::string::npos) << warnings[0];
}

TEST(BinaryTest, StreamCutByTheShutdownDeadlineIsNotBlamedOnTheBackend)
{
    std::atomic<bool> streaming{false};
    origin backend([&streaming](origin_connection& c) {
        if (c.read_request()) {
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n6\r\ndata:1\r\n");
            streaming = true;
            never_answers(c);
        }
    });
    running_portico portico("timeouts: { shutdown: 300ms }\n" + route_to(backend.port()));
    client c(portico.port);
    c.write_raw("GET /events HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    ASSERT_TRUE(wait_until([&streaming] { return streaming.load(); }));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    portico.process->signal(SIGTERM);
    EXPECT_EQ(portico.process->wait(), 0);
    EXPECT_TRUE(portico.process->wait_for_line("shutdown_timeout", std::chrono::seconds(1)));
    for (const auto& line : portico.process->lines()) {
        EXPECT_EQ(line.find("upstream_aborted"), std::string::npos) << line;
    }
}

TEST(BinaryTest, PortInUseExitsThreeNamingThePort)
{
    net::io_context ctx;
    tcp::acceptor taken(ctx, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    const auto port = taken.local_endpoint().port();
    temp_dir dir;
    std::ofstream(dir.path() / "portico.yaml") << fmt::format("listen: [127.0.0.1:{}]\n", port);
    const auto r = run_process({PORTICO_BINARY, "run", "-c", (dir.path() / "portico.yaml").string()});
    EXPECT_EQ(r.exit_code, 3) << r.err;
    EXPECT_NE(r.err.find(std::to_string(port)), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("already in use"), std::string::npos) << r.err;
}

TEST(BinaryTest, SecondPorticoOnTheSamePortExitsThree)
{
    // Its listeners use SO_REUSEPORT, which would let a second instance of the same user
    // bind beside the first and take a share of its connections.
    origin backend;
    running_portico first(route_to(backend.port()));
    temp_dir dir;
    std::ofstream(dir.path() / "portico.yaml")
        << fmt::format("listen: [127.0.0.1:{}]\ntls: {{ ca_dir: {} }}\n", first.port,
                       (dir.path() / "ca").string());
    const auto second =
        run_process({PORTICO_BINARY, "run", "-c", (dir.path() / "portico.yaml").string()},
                    std::chrono::seconds(5));
    EXPECT_EQ(second.exit_code, 3) << second.err;
    EXPECT_NE(second.err.find(fmt::format("port {} is already in use", first.port)),
              std::string::npos)
        << second.err;
    client c(first.port);
    EXPECT_EQ(c.get("app.localhost", "/").result_int(), 200);
}

/// `portico doctor` on `listen_yaml` (a `listen:` value), with `admin` as the admin host.
process_result doctor_on(const temp_dir& dir, const std::string& listen_yaml,
                         const std::string& admin = "portico.localhost")
{
    std::ofstream(dir.path() / "doctor.yaml")
        << fmt::format("listen: {}\nadmin: {}\ntls: {{ ca_dir: {} }}\n", listen_yaml, admin,
                       (dir.path() / "doctor-ca").string());
    return run_process({PORTICO_BINARY, "doctor", "-c", (dir.path() / "doctor.yaml").string()},
                       std::chrono::seconds(10));
}

TEST(BinaryTest, DoctorRecognisesARunningPorticoByItsAdminHostAndOnTlsOnly)
{
    temp_dir dir;
    {
        running_portico own_admin("admin: dash.localhost\nroutes: []\n");
        const auto r = doctor_on(dir, fmt::format("[127.0.0.1:{}]", own_admin.port),
                                 "dash.localhost");
        EXPECT_EQ(r.exit_code, 0) << r;
        EXPECT_NE(r.out.find(fmt::format("127.0.0.1:{}: portico is running there", own_admin.port)),
                  std::string::npos)
            << r;
    }
    // A `tls: only` listener answers plain HTTP with its tls_required page.
    std::ofstream(dir.path() / "tls-only.yaml")
        << fmt::format("listen:\n  - {{ address: 127.0.0.1:0, tls: only }}\n"
                       "tls: {{ ca_dir: {} }}\n",
                       (dir.path() / "ca").string());
    child tls_only({PORTICO_BINARY, "run", "-c", (dir.path() / "tls-only.yaml").string()});
    const auto ready = tls_only.wait_for_line("ready");
    ASSERT_TRUE(ready);
    const auto port = port_from_ready_line(*ready);
    const auto r = doctor_on(dir, fmt::format("[{{ address: 127.0.0.1:{}, tls: only }}]", port));
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_NE(r.out.find(fmt::format("127.0.0.1:{}: portico is running there", port)),
              std::string::npos)
        << r;
}

TEST(BinaryTest, DoctorDoesNotTakeADevServersHealthCheckForPortico)
{
    // The health body many dev servers answer with, on any Host.
    origin dev_server([](origin_connection& c) {
        while (c.read_request()) {
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        "Content-Length: 32\r\n\r\n{\"status\":\"ok\",\"db\":\"connected\"}");
        }
    });
    temp_dir dir;
    const auto r = doctor_on(dir, fmt::format("[127.0.0.1:{}]", dev_server.port()));
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_NE(r.out.find(fmt::format("127.0.0.1:{} is used by another program",
                                     dev_server.port())),
              std::string::npos)
        << r;
}

TEST(BinaryTest, PassthroughLogCountsTheBytesThatCameWithTheClientHello)
{
    // The backend echoes what it gets; the tunnel's count must include the ClientHello and
    // what arrived with it, which portico read before it knew where to send them.
    std::atomic<std::size_t> received{0};
    origin echo([&received](origin_connection& c) {
        std::array<char, 4096> chunk{};
        boost::system::error_code ec;
        for (;;) {
            const auto n = c.stream.read_some(net::buffer(chunk), ec);
            if (ec) {
                break;
            }
            received += n;
            net::write(c.stream, net::buffer(chunk.data(), n), ec);
        }
    });
    running_portico portico(fmt::format(
        "routes:\n  - host: db.localhost\n    to: 127.0.0.1:{}\n    tls_passthrough: true\n",
        echo.port()));
    const auto hello = tls::testing::real_client_hello("db.localhost");
    const std::string first = hello + std::string(1000, 'a');
    const std::string later(500, 'b');
    {
        client c(portico.port);
        c.write_raw(first);
        std::string back(first.size(), '\0');
        net::read(c.stream, net::buffer(back));
        c.write_raw(later);
        back.resize(later.size());
        net::read(c.stream, net::buffer(back));
    }
    const auto line = portico.process->wait_for_line("passthrough_closed");
    ASSERT_TRUE(line);
    EXPECT_EQ(received.load(), first.size() + later.size());
    EXPECT_NE(line->find(fmt::format("bytes_in={}", first.size() + later.size())),
              std::string::npos)
        << *line;
    EXPECT_NE(line->find(fmt::format("bytes_out={}", first.size() + later.size())),
              std::string::npos)
        << *line;
}

TEST(BinaryTest, RunningOutOfDescriptorsPausesAcceptingAndRecovers)
{
    PORTICO_SKIP_IF_SANITIZED_OUT_OF_DESCRIPTORS();
    origin backend;
    running_portico portico(route_to(backend.port()));
    const int pid = portico.process->pid();
    const auto fd_dir = fmt::format("/proc/{}/fd", pid);
    const auto open_fds = std::distance(std::filesystem::directory_iterator(fd_dir),
                                        std::filesystem::directory_iterator());
    // Room for a few connections (and their backend connections), not for a dozen.
    const rlimit low{static_cast<rlim_t>(open_fds + 4), static_cast<rlim_t>(open_fds + 4)};
    ASSERT_EQ(::prlimit(pid, RLIMIT_NOFILE, &low, nullptr), 0) << std::strerror(errno);
    std::vector<std::unique_ptr<client>> clients;
    for (int i = 0; i < 12; ++i) {
        clients.push_back(std::make_unique<client>(portico.port));
        clients.back()->write_raw("GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    }
    ASSERT_TRUE(portico.process->wait_for_line("accept_failed"));
    // Out of descriptors for a second, retrying every 100 ms: said once per episode, not at
    // each of the ten retries. A descriptor freed meanwhile (a connection that got 502 for
    // want of a backend socket and closed, a probe's socket) lets one accept through, which
    // ends the episode; how often that happens depends on timing, so a few are allowed.
    portico.process->wait_for_line("no such line", std::chrono::seconds(1));
    const auto failures = [&portico] {
        const auto& lines = portico.process->lines();
        return std::count_if(lines.begin(), lines.end(), [](const std::string& l) {
            return l.find("accept_failed") != std::string::npos;
        });
    };
    EXPECT_LE(failures(), 3) << fmt::format("{}", fmt::join(portico.process->lines(), "\n"));
    // Connections that close give their descriptors back; those queued meanwhile and new
    // ones are served. The closes reach portico while the next request may already be
    // connecting to the backend, which can still find no descriptor free (a 502): recovery
    // is a request served soon after, not necessarily the first.
    clients.clear();
    int status = 0;
    EXPECT_TRUE(wait_until([&] {
        client after(portico.port);
        status = after.get("app.localhost", "/after").result_int();
        return status == 200;
    }));
    EXPECT_EQ(status, 200);
    portico.process->signal(SIGTERM);
    EXPECT_EQ(portico.process->wait(), 0);
}

TEST(BinaryTest, RunRaisesItsDescriptorLimitToTheHardLimit)
{
    // Debian starts processes with a soft limit of 1024 descriptors; a browser's tabs of dev
    // servers can use that up. `run` takes what the hard limit allows.
    origin backend;
    running_portico portico(route_to(backend.port()), {}, {"/usr/bin/prlimit", "--nofile=256:4096"});
    std::ifstream limits(fmt::format("/proc/{}/limits", portico.process->pid()));
    std::string line;
    std::string open_files;
    while (std::getline(limits, line)) {
        if (line.starts_with("Max open files")) {
            open_files = line;
        }
    }
    const std::regex raised(R"(Max open files\s+4096\s+4096\s+files\s*)");
    EXPECT_TRUE(std::regex_match(open_files, raised)) << open_files;
}

/**
 * The lowest descriptor number process `pid` has free, once two looks 100 ms apart agree:
 * the backend probe holds sockets for a moment after start.
 */
int settled_lowest_free_descriptor(int pid)
{
    const auto lowest_free = [pid] {
        int fd = 0;
        while (std::filesystem::exists(fmt::format("/proc/{}/fd/{}", pid, fd))) {
            ++fd;
        }
        return fd;
    };
    int free_fd = lowest_free();
    for (int i = 0; i < 20; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        const int again = lowest_free();
        if (again == free_fd) {
            break;
        }
        free_fd = again;
    }
    return free_fd;
}

/// Lowers process `pid`'s soft limit on descriptors to `soft` (the hard limit stays) until
/// `restore` or the end of its life.
class lowered_descriptor_limit {
public:
    lowered_descriptor_limit(int pid, rlim_t soft) : pid_(pid)
    {
        if (::prlimit(pid, RLIMIT_NOFILE, nullptr, &before_) != 0) {
            error_ = std::strerror(errno);
            return;
        }
        const rlimit low{soft, before_.rlim_max};
        if (::prlimit(pid, RLIMIT_NOFILE, &low, nullptr) != 0) {
            error_ = std::strerror(errno);
        }
    }
    ~lowered_descriptor_limit() { restore(); }
    lowered_descriptor_limit(const lowered_descriptor_limit&) = delete;
    lowered_descriptor_limit& operator=(const lowered_descriptor_limit&) = delete;

    /// "" once lowered, else why not.
    const std::string& error() const noexcept { return error_; }

    void restore()
    {
        if (error_.empty() && !restored_) {
            restored_ = true;
            ::prlimit(pid_, RLIMIT_NOFILE, &before_, nullptr);
        }
    }

private:
    int pid_;
    rlimit before_{};
    std::string error_;
    bool restored_ = false;
};

TEST(BinaryTest, NoDescriptorForABackendSocketIsSaidSo)
{
    PORTICO_SKIP_IF_SANITIZED_OUT_OF_DESCRIPTORS();
    // With the last descriptor taken by the client's connection, no socket can be made for
    // the backend: the page says so, not that the dev server is not running.
    origin backend;
    running_portico portico(route_to(backend.port()));
    const int pid = portico.process->pid();
    const int free_fd = settled_lowest_free_descriptor(pid);
    // The limit bounds descriptor numbers: the lowest free one is the only one left.
    lowered_descriptor_limit low(pid, static_cast<rlim_t>(free_fd + 1));
    ASSERT_EQ(low.error(), "");
    client c(portico.port);
    const auto res = c.get("app.localhost", "/");
    EXPECT_EQ(res.result_int(), 502);
    EXPECT_NE(res.body().find("no file descriptor left"), std::string::npos) << res.body();
    EXPECT_EQ(res.body().find("start your dev server"), std::string::npos) << res.body();
    EXPECT_TRUE(portico.process->wait_for_line("out_of_descriptors"));
    low.restore();
    client after(portico.port);
    EXPECT_EQ(after.get("app.localhost", "/").result_int(), 200);
}

TEST(BinaryTest, ProbeWithoutADescriptorLeavesTheBackendsStateAlone)
{
    PORTICO_SKIP_IF_SANITIZED_OUT_OF_DESCRIPTORS();
    // The backend probe (every 2 s) that cannot make a socket learns nothing about the
    // backend: a running dev server is not reported down for it.
    origin backend;
    running_portico portico(route_to(backend.port()));
    const auto state = [&portico] {
        client c(portico.port);
        const auto body = c.get("portico.localhost", "/api/routes").body();
        const auto at = body.find("\"state\":\"");
        return at == std::string::npos ? std::string() : body.substr(at + 9, body.find('"', at + 9) - at - 9);
    };
    ASSERT_TRUE(wait_until([&] { return state() == "up"; }));
    const int pid = portico.process->pid();
    const int free_fd = settled_lowest_free_descriptor(pid);
    lowered_descriptor_limit none_left(pid, static_cast<rlim_t>(free_fd));
    ASSERT_EQ(none_left.error(), "");
    // A probe round runs meanwhile (every 2 s), and fails to make its sockets.
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    none_left.restore();
    EXPECT_EQ(state(), "up");
}

std::chrono::milliseconds took_since(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
}

/// portico with `timeouts` and one route, app.localhost to `backend` (a name, remote
/// backends allowed), looking names up where `dns` says.
running_portico portico_naming(const test_name_server& dns, std::string_view timeouts,
                               std::string_view backend)
{
    return running_portico(fmt::format("timeouts: {{ {} }}\nallow_remote_backends: true\n"
                                       "routes:\n  - host: app.localhost\n    to: {}\n",
                                       timeouts, backend),
                           {}, dns.launcher);
}

TEST(BinaryTest, BackendNameTheResolverDoesNotAnswerGets504AtTheConnectTimeout)
{
    // A backend named by host whose name server never answers: each request ends at
    // timeouts.connect with a 504 that names the host, not when the system's resolver gives
    // up (5 s here, a try per server); a name that resolves at once (from the hosts file) is
    // not held up meanwhile, by the server or by `portico routes`; and portico stops at once
    // on SIGTERM though resolves are still stuck.
    test_name_server dns("127.0.83.61");
    if (!dns.unusable.empty()) {
        GTEST_SKIP() << dns.unusable;
    }
    origin backend;
    // Five silent names, more than a thread each would be spared for if names shared a
    // few threads, and one that resolves at once.
    constexpr int silent_names = 5;
    std::string config = fmt::format("timeouts: {{ connect: 300ms, shutdown: 5s }}\n"
                                     "allow_remote_backends: true\nroutes:\n");
    for (int i = 0; i < silent_names; ++i) {
        config += fmt::format("  - host: stuck{0}.localhost\n"
                              "    to: dev-server{0}.portico-test.invalid:8080\n",
                              i);
    }
    config += fmt::format("  - host: fast.localhost\n    to: fast-dev.portico-test:{}\n",
                          backend.port());
    running_portico portico(config, {}, dns.launcher);
    for (int i = 0; i < silent_names; ++i) {
        client c(portico.port);
        const auto start = std::chrono::steady_clock::now();
        auto res = c.get(fmt::format("stuck{}.localhost", i), "/");
        EXPECT_EQ(res.result_int(), 504);
        EXPECT_EQ(res["X-Portico-Error"], "upstream_connect_timeout");
        EXPECT_NE(res.body().find(fmt::format("dev-server{}.portico-test.invalid", i)),
                  std::string::npos)
            << res.body();
        EXPECT_LT(took_since(start), std::chrono::milliseconds(2500)) << "name " << i;
    }
    {
        // Every silent name's resolve is still stuck (5 s from its request).
        client c(portico.port);
        const auto start = std::chrono::steady_clock::now();
        auto res = c.get("fast.localhost", "/fast");
        EXPECT_EQ(res.result_int(), 200) << res.body();
        EXPECT_LT(took_since(start), std::chrono::milliseconds(1500));
    }
    {
        // `portico routes` probes every backend: the fast one is up, the others down, and
        // the command does not wait for the silent names.
        auto argv = dns.launcher;
        argv.insert(argv.end(), {PORTICO_BINARY, "routes", "-c",
                                 (portico.dir.path() / "portico.yaml").string()});
        const auto start = std::chrono::steady_clock::now();
        const auto routes = run_process(argv, std::chrono::seconds(10));
        EXPECT_TRUE(routes.succeeded()) << routes;
        EXPECT_LT(took_since(start), std::chrono::milliseconds(3000));
        const auto& printed = routes.out;
        EXPECT_TRUE(std::regex_search(
            printed, std::regex(R"(fast\.localhost\s+/\s+\S+\s+up\s)")))
            << printed;
        EXPECT_TRUE(std::regex_search(
            printed, std::regex(R"(stuck4\.localhost\s+/\s+\S+\s+down\s)")))
            << printed;
    }
    const auto start = std::chrono::steady_clock::now();
    portico.process->signal(SIGTERM);
    EXPECT_EQ(portico.process->wait(std::chrono::seconds(10)), 0);
    EXPECT_LT(took_since(start), std::chrono::milliseconds(1500))
        << "shutdown waited for the stuck resolve";
}

TEST(BinaryTest, BackendNameThatDoesNotResolveGets502SayingSo)
{
    // A lookup that fails (the name server refuses at once) is a 502 at once that says the
    // name did not resolve, with the resolver's words: nothing was connected to, so the
    // page does not say that nothing listens there.
    test_name_server dns("127.0.83.64", test_name_server::absent);
    if (!dns.unusable.empty()) {
        GTEST_SKIP() << dns.unusable;
    }
    auto portico = portico_naming(dns, "connect: 4s", "dev-box.portico-test.invalid:8080");
    client c(portico.port);
    const auto start = std::chrono::steady_clock::now();
    auto res = c.get("app.localhost", "/", {{"Accept", "application/json"}});
    EXPECT_LT(took_since(start), std::chrono::milliseconds(2000));
    EXPECT_EQ(res.result_int(), 502);
    EXPECT_EQ(res["X-Portico-Error"], "upstream_refused");
    EXPECT_NE(res.body().find("dev-box.portico-test.invalid:8080 for app.localhost did not "
                              "resolve to an address"),
              std::string::npos)
        << res.body();
    EXPECT_EQ(res.body().find("Nothing is listening"), std::string::npos) << res.body();
    portico.process->signal(SIGTERM);
    EXPECT_EQ(portico.process->wait(std::chrono::seconds(10)), 0);
}

TEST(BinaryTest, ShutdownDeadlineEndsAWaitForANameWithoutBlamingTheBackend)
{
    // A request still waiting for a backend's name when the shutdown deadline passes is
    // closed, like every request cut there: no 502 page says the backend is not listening,
    // and portico exits at the deadline, not at timeouts.connect.
    test_name_server dns("127.0.83.62");
    if (!dns.unusable.empty()) {
        GTEST_SKIP() << dns.unusable;
    }
    auto portico = portico_naming(dns, "connect: 5s, shutdown: 500ms",
                                  "dev-server.portico-test.invalid:8080");
    client c(portico.port);
    c.write_raw("GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto start = std::chrono::steady_clock::now();
    portico.process->signal(SIGTERM);
    std::optional<int> status;
    try {
        status = c.read_response().result_int();
    } catch (const std::exception&) {
        // Closed without an answer.
    }
    EXPECT_FALSE(status) << "answered " << *status;
    // Logged as a request that got no answer.
    EXPECT_TRUE(portico.process->wait_for_line(R"("GET / HTTP/1.1" 0 0 )"));
    EXPECT_EQ(portico.process->wait(std::chrono::seconds(10)), 0);
    EXPECT_LT(took_since(start), std::chrono::milliseconds(3000));
}

TEST(BinaryTest, ShutdownDeadlineEndsARetrysWaitForANameWithoutBlamingTheBackend)
{
    // The same for the fresh connection a request is retried on when its pooled one turns
    // out closed: the name resolved from the hosts file the first time, and is then taken
    // out of it (the bind mount shows the same file), so the retry's resolve is stuck.
    test_name_server dns("127.0.83.63");
    if (!dns.unusable.empty()) {
        GTEST_SKIP() << dns.unusable;
    }
    std::atomic<int> requests{0};
    origin backend([&](origin_connection& c) {
        while (c.read_request()) {
            if (requests.fetch_add(1) > 0) {
                return; // closes the pooled connection instead of answering
            }
            c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    auto portico = portico_naming(dns, "connect: 5s, shutdown: 500ms",
                                  fmt::format("fast-dev.portico-test:{}", backend.port()));
    client c(portico.port);
    ASSERT_EQ(c.get("app.localhost", "/1").result_int(), 200);
    std::ofstream(dns.hosts_file(), std::ios::trunc) << "127.0.0.1 localhost\n";
    c.write_raw("GET /2 HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    portico.process->signal(SIGTERM);
    std::optional<int> status;
    try {
        status = c.read_response().result_int();
    } catch (const std::exception&) {
        // Closed without an answer.
    }
    EXPECT_EQ(requests.load(), 2) << "the second request reached the pooled connection";
    EXPECT_FALSE(status) << "answered " << *status;
    EXPECT_TRUE(portico.process->wait_for_line(R"("GET /2 HTTP/1.1" 0 0 )"));
    EXPECT_EQ(portico.process->wait(std::chrono::seconds(10)), 0);
}

TEST(BinaryTest, SigtermRightAfterARequestExitsAtOnce)
{
    // The watch for clients that leave runs while a request waits on its backend; armed by
    // the last one, it must not hold the exit for its next look.
    origin backend;
    running_portico portico(route_to(backend.port()));
    {
        client c(portico.port);
        ASSERT_EQ(c.get("app.localhost", "/").result_int(), 200);
    }
    ASSERT_TRUE(wait_until([&portico] {
        return portico.process->wait_for_line("\"GET / HTTP/1.1\" 200", std::chrono::milliseconds(50))
            .has_value();
    }));
    const auto start = std::chrono::steady_clock::now();
    portico.process->signal(SIGTERM);
    EXPECT_EQ(portico.process->wait(), 0);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(600));
}

/**
 * Sends `count` requests whose access lines are about 1 KiB each, while nobody reads
 * portico's stderr; false when one of them does not get its 200.
 */
bool log_many_requests(running_portico& portico, int count)
{
    const std::string target = "/" + std::string(1000, 'l');
    client c(portico.port);
    for (int i = 0; i < count; ++i) {
        if (c.get("app.localhost", target).result_int() != 200) {
            return false;
        }
    }
    return true;
}

TEST(BinaryTest, StderrNobodyReadsDoesNotStopServingAndDroppedLinesAreCounted)
{
    // `portico run | less`, paused: the pipe fills after 64 KiB of access log. Serving goes
    // on; the lines that do not fit the queue are dropped, and their number is written once
    // stderr is read again.
    origin backend;
    running_portico portico(route_to(backend.port()));
    EXPECT_NO_THROW(EXPECT_TRUE(log_many_requests(portico, 1500)));
    const auto dropped = portico.process->wait_for_line("log_lines_dropped");
    ASSERT_TRUE(dropped);
    EXPECT_NE(dropped->find("count="), std::string::npos) << *dropped;
    // What was queued came out whole, before the count.
    const auto& lines = portico.process->lines();
    const auto access_lines = std::count_if(lines.begin(), lines.end(), [](const auto& line) {
        return line.find("\"GET /llll") != std::string::npos;
    });
    EXPECT_GT(access_lines, 500);
    portico.process->signal(SIGTERM);
    EXPECT_EQ(portico.process->wait(), 0);
}

TEST(BinaryTest, AccessLineLargerThanTheLogQueueIsCountedAtOnce)
{
    // limits.header_bytes allows targets of megabytes: such a line cannot be queued, and its
    // drop is said when it happens, not at the next line logged.
    // The test backend refuses a head this large (502): the access line is written anyway.
    origin backend;
    running_portico portico("limits: { header_bytes: 4MiB }\n" + route_to(backend.port()));
    client c(portico.port);
    EXPECT_NO_THROW(c.get("app.localhost", "/" + std::string(1200 * 1024, 'h')));
    const auto dropped =
        portico.process->wait_for_line("log_lines_dropped", std::chrono::seconds(3));
    ASSERT_TRUE(dropped);
    EXPECT_NE(dropped->find("count=1"), std::string::npos) << *dropped;
}

TEST(BinaryTest, LogLinesStayWholeInAPipeOtherProcessesWriteToo)
{
    // `(portico run & npm run dev) 2>&1 | tee log`: a pipe keeps each write of at most
    // PIPE_BUF bytes whole, so every line must go out in such writes, however many lines
    // waited while the pipe was full.
    origin backend;
    running_portico portico(route_to(backend.port()));
    const int other =
        ::open(fmt::format("/proc/{}/fd/2", portico.process->pid()).c_str(), O_WRONLY);
    ASSERT_GE(other, 0) << std::strerror(errno);
    const std::string other_line = "OTHER-PROCESS " + std::string(85, 'y') + "\n";
    std::atomic<bool> stop{false};
    std::atomic<bool> other_done{false};
    std::thread other_writer([&] {
        while (!stop && ::write(other, other_line.data(), other_line.size()) > 0) {
        }
        other_done = true;
    });
    const auto target = "/" + std::string(300, 'w');
    {
        client c(portico.port);
        for (int i = 0; i < 600; ++i) {
            ASSERT_EQ(c.get("app.localhost", target).result_int(), 200);
        }
        ASSERT_EQ(c.get("app.localhost", "/last").result_int(), 200);
    }
    const auto last = portico.process->wait_for_line("\"GET /last HTTP/1.1\"");
    stop = true;
    // Reading on lets the other writer's last write, blocked on the full pipe, return.
    for (int i = 0; i < 200 && !other_done; ++i) {
        portico.process->wait_for_line("no such line", std::chrono::milliseconds(20));
    }
    other_writer.join();
    ::close(other);
    ASSERT_TRUE(last);
    std::size_t access_lines = 0;
    for (const auto& line : portico.process->lines()) {
        if (line.starts_with("OTHER-PROCESS")) {
            EXPECT_EQ(line + "\n", other_line);
        } else {
            EXPECT_EQ(line.find("OTHER-PROCESS"), std::string::npos) << line;
            access_lines += line.find(target) != std::string::npos ? 1 : 0;
        }
    }
    EXPECT_EQ(access_lines, 600U);
}

TEST(BinaryTest, SigtermExitsWhileStderrIsNotRead)
{
    // The last lines wait for stderr at most two seconds: a reader that is gone for good
    // does not keep portico from stopping.
    origin backend;
    running_portico portico(route_to(backend.port()));
    EXPECT_NO_THROW(EXPECT_TRUE(log_many_requests(portico, 300)));
    const auto start = std::chrono::steady_clock::now();
    portico.process->signal(SIGTERM);
    // Watched without reaping it, and with stderr unread, as `wait` would read it.
    siginfo_t ended{};
    while (ended.si_pid == 0 &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(10)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        ::waitid(P_PID, static_cast<id_t>(portico.process->pid()), &ended,
                 WEXITED | WNOHANG | WNOWAIT);
    }
    EXPECT_EQ(ended.si_pid, portico.process->pid());
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
    EXPECT_EQ(portico.process->wait(), 0);
}

TEST(BinaryTest, SigintStopsGracefullyWithExitZero)
{
    running_portico portico("");
    portico.process->signal(SIGINT);
    EXPECT_EQ(portico.process->wait(), 0);
}

TEST(BinaryTest, TextAccessLogLine)
{
    origin backend;
    running_portico portico(route_to(backend.port()));
    client c(portico.port);
    auto res = c.get("app.localhost:7080", "/path?q=1");
    ASSERT_EQ(res.result_int(), 200);
    const auto line = portico.process->wait_for_line("\"GET /path?q=1 HTTP/1.1\"");
    ASSERT_TRUE(line) << "no access line";
    // TIME CLIENT HOST "METHOD TARGET PROTO" STATUS BYTES DURATIONms -> BACKEND
    const std::regex shape(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z 127\.0\.0\.1:\d+ )"
                           R"(app\.localhost:7080 "GET /path\?q=1 HTTP/1\.1" 200 \d+ )"
                           R"([0-9.]+ms -> 127\.0\.0\.1:\d+$)");
    EXPECT_TRUE(std::regex_match(*line, shape)) << *line;
}

TEST(BinaryTest, AccessLineOfARefusedConnectionNamesNoBackend)
{
    // SPEC: BACKEND is "-" when no backend was reached; the page names the address.
    refused_port nothing;
    running_portico portico(route_to(nothing.port()));
    client c(portico.port);
    ASSERT_EQ(c.get("app.localhost", "/refused").result_int(), 502);
    const auto line = portico.process->wait_for_line("\"GET /refused HTTP/1.1\"");
    ASSERT_TRUE(line) << "no access line";
    EXPECT_TRUE(line->ends_with(" -> -")) << *line;
}

TEST(BinaryTest, AccessLineOfAFailedHandshakeNamesTheAddressAsASuccessWould)
{
    // One backend, one spelling in the log, whether its TLS handshake failed or it answered.
    origin plain;
    running_portico portico(fmt::format(
        "routes:\n  - host: app.localhost\n    to: https://localhost:{}\n"
        "    insecure_skip_verify: true\n",
        plain.port()));
    client c(portico.port);
    ASSERT_EQ(c.get("app.localhost", "/tls").result_int(), 502);
    const auto line = portico.process->wait_for_line("\"GET /tls HTTP/1.1\"");
    ASSERT_TRUE(line) << "no access line";
    EXPECT_TRUE(line->ends_with(fmt::format(" -> 127.0.0.1:{}", plain.port()))) << *line;
}

TEST(BinaryTest, JsonLogFormatForReadyAndAccessLines)
{
    origin backend;
    running_portico portico(route_to(backend.port()), {"--log-format", "json"});
    EXPECT_NE(portico.ready_line.find("\"event\":\"ready\""), std::string::npos);
    EXPECT_NE(portico.ready_line.find("\"protocols\":\"http+https\""), std::string::npos);
    EXPECT_NE(portico.ready_line.find("\"routes\":1"), std::string::npos);
    client c(portico.port);
    c.get("app.localhost", "/j");
    const auto line = portico.process->wait_for_line("\"target\":\"/j\"");
    ASSERT_TRUE(line);
    EXPECT_NE(line->find("\"status\":200"), std::string::npos) << *line;
    EXPECT_NE(line->find("\"method\":\"GET\""), std::string::npos) << *line;
    EXPECT_NE(line->find("\"route\":\"app.localhost\""), std::string::npos) << *line;
}

TEST(BinaryTest, ManyRoutesAreCountedNotListedAtStart)
{
    std::string routes = "routes:\n";
    for (int i = 0; i < 101; ++i) {
        routes += fmt::format("  - host: app{}.localhost\n    to: 127.0.0.1:{}\n", i, 20000 + i);
    }
    running_portico portico(routes);
    EXPECT_NE(portico.ready_line.find("(101 routes)"), std::string::npos) << portico.ready_line;
    const auto& lines = portico.process->lines();
    const auto has = [&lines](std::string_view needle) {
        return std::any_of(lines.begin(), lines.end(),
                           [needle](const std::string& l) { return l.find(needle) != l.npos; });
    };
    EXPECT_TRUE(has("101 routes; 'portico routes' lists them"));
    EXPECT_FALSE(has("app7.localhost"));
    EXPECT_FALSE(has("HOST"));
}

} // namespace
} // namespace portico::test
