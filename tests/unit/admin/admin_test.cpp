// The admin module without a proxy: statistics, rendering, the Origin rule, the /proc/net
// reading behind "exposed", and probes against real loopback sockets.

#include "portico/admin/pages.hpp"
#include "portico/admin/probe.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <boost/asio/steady_timer.hpp>
#include <vector>
#include <atomic>

#include <array>
#include <fstream>
#include <iterator>

namespace portico::admin {
namespace {

namespace json = boost::json;

log::access_record sample(std::string_view route, unsigned status, double ms,
                          std::string_view target = "/")
{
    log::access_record r;
    r.time = std::chrono::system_clock::now();
    r.client = "127.0.0.1:50000";
    r.host = "app.localhost";
    r.method = "GET";
    r.target = target;
    r.proto = "HTTP/1.1";
    r.status = status;
    r.bytes = 10;
    r.duration_ms = ms;
    r.route = route;
    r.backend = "127.0.0.1:5173";
    return r;
}

config::config two_routes()
{
    config::config cfg;
    cfg.listen.push_back({"127.0.0.1", 7080, config::tls_mode::automatic, {}});
    config::route a;
    a.number = 1;
    a.host = "app.localhost";
    a.to.host = "127.0.0.1";
    a.to.port = 5173;
    a.to.text = "127.0.0.1:5173";
    config::route b = a;
    b.number = 2;
    b.host = "api.localhost";
    b.path = "/v1";
    b.to.port = 8000;
    b.to.text = "127.0.0.1:8000";
    cfg.routes = {a, b};
    return cfg;
}

TEST(ObservatoryTest, RecentRequestsAreTheLastHundredNewestFirst)
{
    observatory obs;
    auto& w = obs.add_worker();
    for (int i = 0; i < 250; ++i) {
        const auto target = fmt::format("/{}", i);
        auto r = sample("app.localhost", 200, 1, target);
        r.time = std::chrono::system_clock::time_point(std::chrono::seconds(1000 + i));
        w.record(r, "", 0);
    }
    const auto recent = obs.recent();
    ASSERT_EQ(recent.size(), worker_stats::recent_capacity);
    EXPECT_EQ(recent.front().target, "/249");
    EXPECT_EQ(recent.back().target, "/150");
}

TEST(ObservatoryTest, RecentRequestsKeepABoundedPartOfLongTargetsAndHosts)
{
    // Heads near limits.header_bytes made the list (and each /api/requests answer) megabytes.
    observatory obs;
    auto& w = obs.add_worker();
    const std::string target = "/" + std::string(60'000, 'a');
    const std::string host = std::string(60'000, 'h') + ".localhost";
    auto r = sample("app.localhost", 200, 1, target);
    r.host = host;
    w.record(r, "", 0);
    w.record(sample("app.localhost", 200, 1, "/short"), "", 0);
    const auto recent = obs.recent();
    ASSERT_EQ(recent.size(), 2U);
    EXPECT_EQ(recent.front().target, "/short");
    EXPECT_EQ(recent.back().target.size(), worker_stats::recent_text_limit);
    EXPECT_TRUE(recent.back().target.starts_with("/aaa"));
    EXPECT_TRUE(recent.back().target.ends_with("..."));
    EXPECT_EQ(recent.back().host.size(), worker_stats::recent_text_limit);
}

TEST(ObservatoryTest, WorkersAreSummedAndMergedByTime)
{
    observatory obs;
    auto& a = obs.add_worker();
    auto& b = obs.add_worker();
    auto early = sample("app.localhost", 200, 1, "/early");
    early.time = std::chrono::system_clock::time_point(std::chrono::seconds(10));
    auto late = sample("app.localhost", 502, 3, "/late");
    late.time = std::chrono::system_clock::time_point(std::chrono::seconds(20));
    b.record(early, "", 5);
    a.record(late, "upstream_refused", 0);
    a.connection_opened();
    b.connection_opened();
    b.tunnel_opened();

    const auto recent = obs.recent();
    ASSERT_EQ(recent.size(), 2U);
    EXPECT_EQ(recent[0].target, "/late");
    const auto totals = obs.totals();
    const auto& route = totals.routes.at("app.localhost");
    EXPECT_EQ(route.requests(), 2U);
    EXPECT_EQ(route.errors, 1U);
    EXPECT_EQ(route.upstream_errors.at("upstream_refused"), 1U);
    EXPECT_EQ(totals.bytes_in, 5U);
    EXPECT_EQ(totals.duration_count, 2U);
    EXPECT_EQ(obs.active_connections(), 2);
    EXPECT_EQ(obs.active_tunnels(), 1);
}

TEST(ObservatoryTest, CertificateCountSurvivesAManagerReplacement)
{
    observatory obs;
    std::uint64_t first = 3;
    obs.set_certificate_counter([&] { return first; });
    EXPECT_EQ(obs.certificates_issued(), 3U);
    obs.set_certificate_counter([] { return std::uint64_t{2}; });
    EXPECT_EQ(obs.certificates_issued(), 5U);
}

TEST(PagesTest, MetricsAreValidPrometheusText)
{
    const auto cfg = two_routes();
    const routing::route_table table(cfg);
    observatory obs;
    auto& w = obs.add_worker();
    w.record(sample("app.localhost", 200, 0.4), "", 0);
    w.record(sample("app.localhost", 200, 30), "", 0);
    w.record(sample("api.localhost/v1", 504, 12000), "upstream_timeout", 0);
    w.record(sample("we\"ird\\route", 404, 1), "no_route", 0);
    obs.observe_backend("127.0.0.1:5173", backend_state::up);
    obs.record_reload(false, "x");
    const page_context ctx{cfg, table, obs, "1.2.3", {}};
    const auto text = render_metrics(ctx);

    EXPECT_NE(text.find("portico_requests_total{route=\"app.localhost\",code=\"200\"} 2\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("portico_requests_total{route=\"we\\\"ird\\\\route\",code=\"404\"} 1\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("portico_upstream_errors_total{route=\"api.localhost/v1\",error=\"upstream_timeout\"} 1\n"),
              std::string::npos);
    // Cumulative buckets, `le` inclusive: 0.4 ms and 1 ms in the first, 30 ms by 0.05, 12 s
    // only in +Inf.
    EXPECT_NE(text.find("portico_request_duration_seconds_bucket{le=\"0.001\"} 2\n"), std::string::npos);
    EXPECT_NE(text.find("portico_request_duration_seconds_bucket{le=\"0.05\"} 3\n"), std::string::npos);
    EXPECT_NE(text.find("portico_request_duration_seconds_bucket{le=\"10\"} 3\n"), std::string::npos);
    EXPECT_NE(text.find("portico_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos);
    EXPECT_NE(text.find("portico_request_duration_seconds_count 4\n"), std::string::npos);
    EXPECT_NE(text.find("portico_config_reloads_total{result=\"failure\"} 1\n"), std::string::npos);
    EXPECT_NE(text.find("portico_backend_up{to=\"127.0.0.1:5173\"} 1\n"), std::string::npos);
    EXPECT_NE(text.find("portico_backend_up{to=\"127.0.0.1:8000\"} 0\n"), std::string::npos);
    EXPECT_NE(text.find("portico_build_info{version=\"1.2.3\"} 1\n"), std::string::npos);
    // Every sample line belongs to a declared family.
    std::size_t pos = 0;
    while (pos < text.size()) {
        const auto end = text.find('\n', pos);
        const auto line = text.substr(pos, end - pos);
        pos = end + 1;
        if (line.starts_with("#")) {
            continue;
        }
        const auto name = line.substr(0, line.find_first_of("{ "));
        const auto family = name.starts_with("portico_request_duration_seconds")
                                ? std::string("portico_request_duration_seconds")
                                : name;
        EXPECT_NE(text.find("# TYPE " + family + " "), std::string::npos) << line;
    }
}

TEST(PagesTest, RoutesApiUsesTheStateWords)
{
    const auto cfg = two_routes();
    const routing::route_table table(cfg);
    observatory obs;
    obs.observe_backend("127.0.0.1:5173", backend_state::exposed);
    obs.observe_backend("127.0.0.1:8000", backend_state::down);
    const page_context ctx{cfg, table, obs, "1.2.3", {}};
    const auto res = respond({"GET", "/api/routes?x=1", "https", "7080"}, ctx);
    ASSERT_EQ(res.status, 200U);
    const auto doc = json::parse(res.body);
    const auto& routes = doc.at("routes").as_array();
    ASSERT_EQ(routes.size(), 2U);
    EXPECT_EQ(routes[0].at("state").as_string(), "exposed");
    EXPECT_EQ(routes[0].at("url").as_string(), "https://app.localhost:7080/");
    EXPECT_EQ(routes[1].at("state").as_string(), "down");
    EXPECT_EQ(routes[1].at("url").as_string(), "https://api.localhost:7080/v1/");

    const auto page = respond({"GET", "/", "https", "7080"}, ctx);
    EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
    EXPECT_NE(page.body.find("exposed to the network"), std::string::npos);
    EXPECT_NE(page.body.find("bind the dev server to 127.0.0.1"), std::string::npos);
    EXPECT_NE(page.body.find("start your dev server on 127.0.0.1:8000"), std::string::npos);
    EXPECT_NE(page.body.find("<a href=\"https://app.localhost:7080/\">app.localhost</a>"),
              std::string::npos);
}

TEST(PagesTest, DashboardTotalsLeaveOutTheAdminPagesAfterTheAdminHostChanged)
{
    auto cfg = two_routes();
    observatory obs;
    auto& w = obs.add_worker();
    w.record(sample("app.localhost", 200, 1), "", 0);
    w.record(sample("app.localhost", 502, 1), "upstream_refused", 0);
    // The dashboard polled itself under the admin host it had before a reload...
    for (int i = 0; i < 5; ++i) {
        w.record(sample("portico.localhost", 200, 1), "", 0, false);
    }
    w.record(sample("portico.localhost", 403, 1), "forbidden_origin", 0, false);
    // ...which is now another name.
    cfg.admin = "dash.localhost";
    const routing::route_table table(cfg);
    const page_context ctx{cfg, table, obs, "1.2.3", {}};
    const auto page = respond({"GET", "/", "http", "7080"}, ctx).body;
    EXPECT_NE(page.find("<b>2</b><span>requests</span>"), std::string::npos) << page;
    EXPECT_NE(page.find("<b>1</b><span>errors</span>"), std::string::npos) << page;
}

TEST(PagesTest, BackendNotProbedYetIsDownInTheApis)
{
    // SPEC's state words are up, down and exposed; a backend a reload has just added, not
    // probed yet, is not known to listen. The dashboard says it is being checked.
    const auto cfg = two_routes();
    const routing::route_table table(cfg);
    observatory obs;
    const page_context ctx{cfg, table, obs, "1.2.3", {}};
    const auto routes = json::parse(respond({"GET", "/api/routes", "http", "7080"}, ctx).body);
    EXPECT_EQ(routes.at("routes").as_array()[0].at("state").as_string(), "down");
    const auto health = json::parse(respond({"GET", "/api/health", "http", "7080"}, ctx).body);
    EXPECT_EQ(health.at("backends").as_array()[0].at("state").as_string(), "down");
    const auto page = respond({"GET", "/", "http", "7080"}, ctx);
    EXPECT_NE(page.body.find("checking"), std::string::npos);
}

TEST(PagesTest, HttpsOnlyRoutesAreLinkedOnThePortThatServesHttps)
{
    auto cfg = two_routes();
    cfg.routes[0].redirect_https = true;
    cfg.routes[1].tls_passthrough = true;
    cfg.routes[1].path = "/";
    const routing::route_table table(cfg);
    observatory obs;
    const page_context ctx{cfg, table, obs, "1.2.3", {}};
    const auto doc = json::parse(respond({"GET", "/api/routes", "http", "7080", "7443"}, ctx).body);
    const auto& routes = doc.at("routes").as_array();
    EXPECT_EQ(routes[0].at("url").as_string(), "https://app.localhost:7443/");
    EXPECT_EQ(routes[1].at("url").as_string(), "https://api.localhost:7443/");
    // With no other port to name, the request's own.
    const auto own = json::parse(respond({"GET", "/api/routes", "http", "7080"}, ctx).body);
    EXPECT_EQ(own.at("routes").as_array()[0].at("url").as_string(), "https://app.localhost:7080/");
}

TEST(PagesTest, DashboardEscapesWhatClientsSent)
{
    const auto cfg = two_routes();
    const routing::route_table table(cfg);
    observatory obs;
    obs.add_worker().record(sample("", 404, 1, "/<script>alert(1)</script>"), "no_route", 0);
    const page_context ctx{cfg, table, obs, "1.2.3", {}};
    const auto page = respond({"GET", "/", "http", "7080"}, ctx);
    EXPECT_EQ(page.body.find("<script>alert(1)"), std::string::npos);
    EXPECT_NE(page.body.find("&lt;script&gt;alert(1)"), std::string::npos);
}

TEST(PagesTest, RecentRequestsApiIsUtf8WhateverBytesClientsSent)
{
    const auto cfg = two_routes();
    const routing::route_table table(cfg);
    observatory obs;
    obs.add_worker().record(sample("", 404, 1, "/\xFF\xFE"), "no_route", 0);
    const page_context ctx{cfg, table, obs, "1.2.3", {}};
    const auto res = respond({"GET", "/api/requests", "http", "7080"}, ctx);
    ASSERT_EQ(res.status, 200U);
    const auto doc = json::parse(res.body); // throws on invalid UTF-8
    EXPECT_EQ(doc.at("requests").as_array().at(0).at("target").as_string(),
              "/\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(OriginTest, OnlyPorticoItselfOnItsOwnPorts)
{
    const std::array<std::uint16_t, 2> ports{7080, 443};
    const auto ok = [&](std::string_view v) { return is_allowed_origin(v, "portico.localhost", ports); };
    EXPECT_TRUE(ok("http://portico.localhost:7080"));
    EXPECT_TRUE(ok("https://PORTICO.localhost.:7080"));
    EXPECT_TRUE(ok("HTTP://localhost:7080"));
    EXPECT_TRUE(ok("Https://portico.localhost")); // 443, as for https
    EXPECT_FALSE(ok("HTTP://portico.localhost")); // 80, as for http
    EXPECT_TRUE(ok("http://localhost:7080/api/routes?x"));
    EXPECT_TRUE(ok("http://127.0.0.1:7080"));
    EXPECT_TRUE(ok("http://[::1]:7080"));
    EXPECT_TRUE(ok("https://portico.localhost")); // 443 is a listener here
    EXPECT_FALSE(ok("http://portico.localhost")); // 80 is not
    EXPECT_FALSE(ok("http://portico.localhost:7081"));
    EXPECT_FALSE(ok("http://app.localhost:7080"));
    EXPECT_FALSE(ok("http://127.0.0.2:7080"));
    EXPECT_FALSE(ok("http://evil.example:7080"));
    EXPECT_FALSE(ok("http://portico.localhost.evil.example:7080"));
    EXPECT_FALSE(ok("http://user@portico.localhost:7080"));
    EXPECT_FALSE(ok("ftp://portico.localhost:7080"));
    EXPECT_FALSE(ok("null"));
    EXPECT_FALSE(ok(""));
    EXPECT_FALSE(ok("http://portico.localhost:70800"));
    EXPECT_FALSE(ok("http://portico.localhost:7080x"));
}

TEST(ExposureTest, ListenersOnNonLoopbackAddressesAreExposed)
{
    const std::string tcp =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 1 1 0 100 0 0 10 0\n"
        "   1: 00000000:1435 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 2 1 0 100 0 0 10 0\n"
        "   2: 0100007F:1F40 0A00020F:8000 01 00000000:00000000 00:00000000 00000000  0 0 3 1 0 100 0 0 10 0\n"
        "   3: 0A00020F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 4 1 0 100 0 0 10 0\n"
        "   4: 0500007F:0FA0 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 5 1 0 100 0 0 10 0\n";
    const std::string tcp6 =
        "  sl  local_address                         remote_address                        st\n"
        "   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 0\n"
        "   1: 00000000000000000000000000000000:2382 00000000000000000000000000000000:0000 0A 0\n"
        "   2: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 0\n"
        "   3: 00000000000000000000000000000000:2383 00000000000000000000000000000000:0000 06 0\n";
    const auto exposed = exposed_ports(tcp, tcp6);
    const std::set<std::uint16_t> expected{5173, 3000, 9090};
    EXPECT_EQ(exposed, expected);
}

TEST(ExposureTest, KernelListsListenersWithTheirAddressKind)
{
    namespace net = boost::asio;
    net::io_context io;
    net::ip::tcp::acceptor v4(io, {net::ip::make_address("127.0.0.1"), 0});
    net::ip::tcp::acceptor v6(io, {net::ip::make_address("::1"), 0});
    const auto listeners = read_tcp_listeners();
    ASSERT_TRUE(listeners.has_value()) << "netlink socket diagnostics unavailable";
    const auto find = [&](std::uint16_t port) -> const tcp_listener* {
        for (const auto& l : *listeners) {
            if (l.port == port) {
                return &l;
            }
        }
        return nullptr;
    };
    const auto* found_v4 = find(v4.local_endpoint().port());
    const auto* found_v6 = find(v6.local_endpoint().port());
    ASSERT_NE(found_v4, nullptr);
    ASSERT_NE(found_v6, nullptr);
    EXPECT_TRUE(found_v4->loopback);
    EXPECT_TRUE(found_v6->loopback);
    const auto exposed = read_exposed_ports();
    EXPECT_FALSE(exposed.contains(v4.local_endpoint().port()));
    EXPECT_FALSE(exposed.contains(v6.local_endpoint().port()));
    // The kernel's answer and /proc/net agree on what is exposed (this machine's own
    // services; listeners the test opens are loopback only).
    std::set<std::uint16_t> from_kernel;
    for (const auto& l : *listeners) {
        if (!l.loopback) {
            from_kernel.insert(l.port);
        }
    }
    const auto read = [](const char* path) {
        std::ifstream in(path);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    EXPECT_EQ(from_kernel, exposed_ports(read("/proc/net/tcp"), read("/proc/net/tcp6")));
}

TEST(ProbeTest, ListeningRefusingAndUnixBackends)
{
    namespace net = boost::asio;
    net::io_context io;
    net::ip::tcp::acceptor listening(io, {net::ip::make_address("127.0.0.1"), 0});
    listening.listen();
    // A bound socket that never listens refuses connections.
    net::ip::tcp::socket refusing(io);
    refusing.open(net::ip::tcp::v4());
    refusing.bind({net::ip::make_address("127.0.0.1"), 0});

    config::backend up;
    up.host = "127.0.0.1";
    up.port = listening.local_endpoint().port();
    up.text = "up";
    config::backend down = up;
    down.port = refusing.local_endpoint().port();
    down.text = "down";
    config::backend missing_socket;
    missing_socket.scheme = config::backend_scheme::unix_socket;
    missing_socket.socket_path = "/nonexistent/portico-test.sock";
    missing_socket.text = "unix:/nonexistent/portico-test.sock";

    const auto states =
        probe_backends_now({up, down, missing_socket}, std::chrono::milliseconds(500));
    EXPECT_EQ(states.at("up"), backend_state::up);
    EXPECT_EQ(states.at("down"), backend_state::down);
    EXPECT_EQ(states.at("unix:/nonexistent/portico-test.sock"), backend_state::down);
}

TEST(ProbeTest, PokeDuringARoundProbesTheNewBackendsRightAfterIt)
{
    namespace net = boost::asio;
    net::io_context io;
    // A listener whose accept queue is full drops further SYNs: probing it takes the whole
    // probe timeout, so the poke below lands while a round is running.
    net::ip::tcp::acceptor full(io, {net::ip::make_address("127.0.0.1"), 0});
    full.listen(0);
    std::vector<net::ip::tcp::socket> queued;
    for (int i = 0; i < 2; ++i) {
        queued.emplace_back(io);
        queued.back().open(net::ip::tcp::v4());
        queued.back().non_blocking(true);
        // Asio's own connect would wait for the handshake; these are left pending.
        const auto to = full.local_endpoint();
        static_cast<void>(::connect(queued.back().native_handle(), to.data(), to.size()));
    }
    net::ip::tcp::acceptor listening(io, {net::ip::make_address("127.0.0.1"), 0});
    listening.listen();

    config::backend slow;
    slow.host = "127.0.0.1";
    slow.port = full.local_endpoint().port();
    slow.text = "slow";
    config::backend added = slow;
    added.port = listening.local_endpoint().port();
    added.text = "added";

    observatory obs;
    std::atomic<bool> reloaded{false};
    backend_monitor monitor(executor(io.get_executor()), obs, [&] {
        return reloaded ? std::vector<config::backend>{slow, added}
                        : std::vector<config::backend>{slow};
    }, std::chrono::seconds(30), std::chrono::milliseconds(500));
    monitor.start();
    // A reload 100 ms into the first round, which asked for the backends before it.
    net::steady_timer reload_at(io, std::chrono::milliseconds(100));
    reload_at.async_wait([&](boost::system::error_code) {
        reloaded = true;
        monitor.poke();
    });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (obs.backend("added") != backend_state::up && std::chrono::steady_clock::now() < deadline) {
        io.run_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(obs.backend("added"), backend_state::up);
    monitor.stop();
    io.run_for(std::chrono::milliseconds(600));
}

} // namespace
} // namespace portico::admin
