// Reloads applied to a running proxy, and the admin host's pages, API and metrics, with real
// backends and clients on loopback.

#include "support/origin.hpp"
#include "support/proxy_harness.hpp"

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <optional>
#include <regex>

namespace portico::test {
namespace {

namespace json = boost::json;

std::string route(std::string_view host, unsigned short port, std::string_view extra = "")
{
    return fmt::format("  - host: {}\n    to: 127.0.0.1:{}\n{}", host, port, extra);
}

std::string routes(std::initializer_list<std::string> entries)
{
    std::string out = "routes:\n";
    for (const auto& e : entries) {
        out += e;
    }
    return out;
}

json::value get_json(unsigned short port, std::string_view target,
                     std::vector<std::pair<std::string, std::string>> fields = {})
{
    client c(port);
    const auto res = c.get("portico.localhost", target, std::move(fields));
    EXPECT_EQ(res.result_int(), 200) << res;
    EXPECT_EQ(res[beast::http::field::content_type], "application/json") << res;
    return json::parse(res.body());
}

std::string state_of(const json::value& routes_doc, std::string_view host)
{
    for (const auto& r : routes_doc.at("routes").as_array()) {
        if (r.at("host").as_string() == host) {
            return std::string(r.at("state").as_string());
        }
    }
    return "missing";
}

/// The value of one sample line of Prometheus text, or -1 when absent.
double metric(const std::string& text, const std::string& series)
{
    std::size_t pos = 0;
    while ((pos = text.find(series + " ", pos)) != std::string::npos) {
        if (pos == 0 || text[pos - 1] == '\n') {
            return std::stod(text.substr(pos + series.size() + 1));
        }
        pos += series.size();
    }
    return -1;
}

std::string metrics_text(unsigned short port)
{
    client c(port);
    const auto res = c.get("portico.localhost", "/metrics");
    EXPECT_EQ(res.result_int(), 200) << res;
    EXPECT_TRUE(res[beast::http::field::content_type].starts_with("text/plain")) << res;
    return res.body();
}

TEST(ReloadTest, NewRouteServesOnAnOpenKeepAliveConnection)
{
    origin a;
    origin b;
    proxy_harness proxy(routes({route("a.localhost", a.port())}));
    client c(proxy.port());
    EXPECT_EQ(c.get("a.localhost", "/").result_int(), 200);
    EXPECT_EQ(c.get("b.localhost", "/").result_int(), 404);

    client kept(proxy.port());
    EXPECT_EQ(kept.get("a.localhost", "/").result_int(), 200);
    const auto result =
        proxy.reload(routes({route("a.localhost", a.port()), route("b.localhost", b.port())}));
    ASSERT_TRUE(result.ok) << result.message;

    // The connection opened before the reload is still served, now with the new table.
    const auto res = kept.get("b.localhost", "/");
    EXPECT_EQ(res.result_int(), 200) << res;
    EXPECT_EQ(kept.get("a.localhost", "/").result_int(), 200);
    EXPECT_EQ(b.seen().size(), 1U);
}

TEST(ReloadTest, RemovedRouteAnswers404WhileItsOpenWebSocketKeepsWorking)
{
    origin backend(websocket_echo);
    proxy_harness proxy(routes({route("app.localhost", backend.port())}));
    net::io_context ctx;
    auto socket = connect_loopback(ctx, proxy.port());
    beast::websocket::stream<bounded_stream> ws(socket);
    ws.handshake("app.localhost", "/ws");

    ASSERT_TRUE(proxy.reload("routes: []\n").ok);
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/").result_int(), 404);

    beast::flat_buffer buffer;
    for (int i = 0; i < 50; ++i) {
        const auto message = fmt::format("after reload {}", i);
        ws.write(net::buffer(message));
        ws.read(buffer);
        ASSERT_EQ(beast::buffers_to_string(buffer.data()), message);
        buffer.consume(buffer.size());
    }
    EXPECT_GE(metric(metrics_text(proxy.port()), "portico_tunnels_active"), 1);
    ws.close(beast::websocket::close_code::normal);
}

TEST(ReloadTest, RequestsInFlightFinishOnTheirRoute)
{
    // The backend answers only after the reload has removed its route.
    std::atomic<bool> reloaded{false};
    std::atomic<bool> arrived{false};
    origin slow([&](origin_connection& c) {
        while (auto req = c.read_request()) {
            arrived = true;
            wait_until([&] { return reloaded.load(); }, std::chrono::seconds(5));
            response res{beast::http::status::ok, 11};
            res.body() = "finished on the old route";
            res.prepare_payload();
            c.write(res);
        }
    });
    proxy_harness proxy(routes({route("app.localhost", slow.port())}));
    std::optional<response> res;
    std::thread request([&] {
        client c(proxy.port());
        res = c.get("app.localhost", "/slow");
    });
    EXPECT_TRUE(wait_until([&] { return arrived.load(); }));
    EXPECT_TRUE(proxy.reload("routes: []\n").ok);
    reloaded = true;
    request.join();
    ASSERT_TRUE(res.has_value());
    EXPECT_EQ(res->result_int(), 200);
    EXPECT_EQ(res->body(), "finished on the old route");
}

TEST(ReloadTest, AddedListenerIsBoundAndRemovedOneCloses)
{
    origin backend;
    const auto extra = [] {
        // A port that was free a moment ago; the proxy binds it next.
        net::io_context io;
        tcp::acceptor probe(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
        return probe.local_endpoint().port();
    }();
    const auto body = routes({route("app.localhost", backend.port())});
    proxy_harness proxy(body);
    ASSERT_TRUE(proxy
                    .reload(fmt::format("listen: [127.0.0.1:0, 127.0.0.1:{}]\n{}", extra, body))
                    .ok);
    {
        client c(extra);
        EXPECT_EQ(c.get("app.localhost", "/").result_int(), 200);
    }
    // The first listener was kept (same address), so its connections were never interrupted.
    {
        client c(proxy.port());
        EXPECT_EQ(c.get("app.localhost", "/").result_int(), 200);
    }
    ASSERT_TRUE(proxy.reload(body).ok);
    EXPECT_TRUE(wait_until([&] {
        try {
            client c(extra);
            return false;
        } catch (const std::exception&) {
            return true; // refused: nothing listens there any more
        }
    }));
}

TEST(ReloadTest, ListenerWrittenAnotherWayKeepsItsSockets)
{
    // 127.0.0.1:P and localhost:P (127.0.0.1:P and [::1]:P) share an address: a reload
    // between them is not refused as a port in use, and keeps the shared address's sockets.
    // Closing them for new ones would reset a client the kernel queued on them meanwhile.
    origin backend;
    const auto body = routes({route("app.localhost", backend.port())});
    proxy_harness proxy(body);
    const auto port = proxy.port();
    for (int i = 0; i < 10; ++i) {
        const auto listen = i % 2 == 0 ? "localhost" : "127.0.0.1";
        const auto result = proxy.reload(fmt::format("listen: [{}:{}]\n{}", listen, port, body));
        ASSERT_TRUE(result.ok) << result.message;
        client c(port); // at once: the workers may not have applied the reload yet
        EXPECT_EQ(c.get("app.localhost", "/").result_int(), 200) << i;
    }
}

TEST(ReloadTest, ListenerThatCannotBindKeepsTheOldConfiguration)
{
    origin a;
    origin b;
    net::io_context io;
    tcp::acceptor taken(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    taken.listen();
    proxy_harness proxy(routes({route("a.localhost", a.port())}));
    const auto result =
        proxy.reload(fmt::format("listen: [127.0.0.1:0, 127.0.0.1:{}]\n{}",
                                 taken.local_endpoint().port(),
                                 routes({route("b.localhost", b.port())})));
    EXPECT_FALSE(result.ok);
    EXPECT_NE(result.message.find("already in use"), std::string::npos) << result.message;
    client c(proxy.port());
    EXPECT_EQ(c.get("a.localhost", "/").result_int(), 200);
    EXPECT_EQ(c.get("b.localhost", "/").result_int(), 404);
}

TEST(AdminTest, RoutesAndHealthShowBackendStates)
{
    origin up;
    refused_port down;
    proxy_harness proxy(routes({route("app.localhost", up.port()),
                                route("api.localhost", down.port(), "    path: /v1\n")}));
    // The server's own monitor is not running in-process; requests report what they see.
    client c(proxy.port());
    EXPECT_EQ(c.get("api.localhost", "/v1/x").result_int(), 502);
    proxy.observatory().observe_backend(fmt::format("127.0.0.1:{}", up.port()),
                                        admin::backend_state::up);

    json::value doc;
    EXPECT_TRUE(wait_until([&] {
        doc = get_json(proxy.port(), "/api/routes");
        return doc.at("routes").as_array().at(1).at("errors").as_int64() == 1;
    }));
    const auto& list = doc.at("routes").as_array();
    ASSERT_EQ(list.size(), 2U);
    EXPECT_EQ(list[0].at("host").as_string(), "app.localhost");
    EXPECT_EQ(list[0].at("path").as_string(), "/");
    EXPECT_EQ(list[0].at("to").as_string(), fmt::format("127.0.0.1:{}", up.port()));
    EXPECT_EQ(list[1].at("path").as_string(), "/v1");
    EXPECT_EQ(state_of(doc, "app.localhost"), "up");
    EXPECT_EQ(state_of(doc, "api.localhost"), "down");
    EXPECT_EQ(list[1].at("errors").as_int64(), 1);

    const auto health = get_json(proxy.port(), "/api/health");
    EXPECT_EQ(health.at("status").as_string(), "ok");
    EXPECT_EQ(health.at("backends").as_array().size(), 2U);
}

TEST(AdminTest, RecentRequestsAreAccessLogObjectsNewestFirst)
{
    origin backend;
    proxy_harness proxy(routes({route("app.localhost", backend.port())}));
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/first").result_int(), 200);
    EXPECT_EQ(c.get("app.localhost", "/second?q=1").result_int(), 200);
    EXPECT_EQ(c.get("nothing.localhost", "/third").result_int(), 404);

    get_json(proxy.port(), "/api/routes");
    // The admin host's own requests (the dashboard polls) are counted but not listed. A
    // request is listed once its response is written, so wait (bounded) for the third.
    json::value doc;
    EXPECT_TRUE(wait_until([&] {
        doc = get_json(proxy.port(), "/api/requests");
        return doc.at("requests").as_array().size() >= 3;
    }));
    const auto& list = doc.at("requests").as_array();
    ASSERT_EQ(list.size(), 3U);
    EXPECT_EQ(list[0].at("target").as_string(), "/third");
    EXPECT_EQ(list[0].at("status").as_int64(), 404);
    EXPECT_EQ(list[1].at("target").as_string(), "/second?q=1");
    EXPECT_EQ(list[1].at("route").as_string(), "app.localhost");
    EXPECT_EQ(list[1].at("method").as_string(), "GET");
    EXPECT_EQ(list[1].at("host").as_string(), "app.localhost");
    EXPECT_EQ(list[1].at("backend").as_string(), fmt::format("127.0.0.1:{}", backend.port()));
    EXPECT_EQ(list[2].at("target").as_string(), "/first");
    for (const auto* key : {"time", "client", "proto", "bytes", "duration_ms"}) {
        EXPECT_TRUE(list[1].as_object().contains(key)) << key;
    }
}

TEST(AdminTest, MetricsCountRequestsByRouteAndCode)
{
    origin backend;
    refused_port down;
    proxy_harness proxy(routes({route("app.localhost", backend.port()),
                                route("down.localhost", down.port())}));
    const auto series = "portico_requests_total{route=\"app.localhost\",code=\"200\"}";
    const auto before = metrics_text(proxy.port());
    EXPECT_EQ(metric(before, series), -1) << before;
    client c(proxy.port());
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(c.get("app.localhost", "/").result_int(), 200);
    }
    EXPECT_EQ(c.get("down.localhost", "/").result_int(), 502);
    // A worker records a request once its response is written, so the client can ask another
    // worker before the count is in: wait (bounded) for the last one.
    std::string after;
    EXPECT_TRUE(wait_until([&] {
        after = metrics_text(proxy.port());
        return metric(after, "portico_requests_total{route=\"down.localhost\",code=\"502\"}") == 1;
    }));
    EXPECT_EQ(metric(after, series), 3) << after;
    EXPECT_EQ(metric(after, "portico_requests_total{route=\"down.localhost\",code=\"502\"}"), 1);
    EXPECT_EQ(metric(after, "portico_upstream_errors_total{route=\"down.localhost\",error=\"upstream_refused\"}"), 1);
    EXPECT_GE(metric(after, "portico_request_duration_seconds_count"), 4);
    EXPECT_GE(metric(after, "portico_request_duration_seconds_bucket{le=\"+Inf\"}"), 4);
    EXPECT_GE(metric(after, "portico_connections_active"), 1);
    EXPECT_EQ(metric(after, "portico_config_reloads_total{result=\"success\"}"), 0);
    EXPECT_EQ(metric(after, "portico_build_info{version=\"" PORTICO_TEST_VERSION "\"}"), 1);
    EXPECT_NE(after.find("# TYPE portico_request_duration_seconds histogram"), std::string::npos);

    ASSERT_TRUE(proxy.reload(routes({route("app.localhost", backend.port())})).ok);
    // A reload driven by the control thread records its outcome; in-process, record it here.
    proxy.observatory().record_reload(true, {});
    EXPECT_EQ(metric(metrics_text(proxy.port()), "portico_config_reloads_total{result=\"success\"}"), 1);
}

TEST(AdminTest, ParkedConnectionsCountAsOpenUntilTheyClose)
{
    // A connection idle after its first request waits in the worker's parking lot with no
    // socket object of its own (decision 0021); it is still an open connection, counted once
    // when it comes back for more and no longer once its client has closed it.
    origin backend;
    proxy_harness proxy("workers: 1\n" + routes({route("app.localhost", backend.port())}));
    client metrics(proxy.port());
    const auto active = [&] {
        const auto res = metrics.get("portico.localhost", "/metrics");
        return metric(res.body(), "portico_connections_active");
    };
    EXPECT_EQ(active(), 1); // this one, while it asks
    client parked(proxy.port());
    EXPECT_EQ(parked.get("app.localhost", "/").result_int(), 200);
    std::optional<client> leaving(std::in_place, proxy.port());
    EXPECT_EQ(leaving->get("app.localhost", "/").result_int(), 200);
    EXPECT_EQ(active(), 3);
    EXPECT_EQ(parked.get("app.localhost", "/again").result_int(), 200);
    EXPECT_EQ(active(), 3);
    leaving.reset();
    EXPECT_TRUE(wait_until([&] { return active() == 2; })) << active();
}

TEST(AdminTest, ForeignOriginOrRefererIsRefused)
{
    proxy_harness proxy("routes: []\n");
    const auto port = std::to_string(proxy.port());
    const auto status = [&](std::vector<std::pair<std::string, std::string>> fields) {
        client c(proxy.port());
        const auto res = c.get("portico.localhost", "/api/routes", std::move(fields));
        if (res.result_int() == 403) {
            EXPECT_EQ(res["X-Portico-Error"], "forbidden_origin") << res;
        }
        return res.result_int();
    };
    EXPECT_EQ(status({}), 200);
    EXPECT_EQ(status({{"Origin", "http://portico.localhost:" + port}}), 200);
    EXPECT_EQ(status({{"Origin", "https://localhost:" + port}}), 200);
    EXPECT_EQ(status({{"Origin", "http://127.0.0.1:" + port}}), 200);
    EXPECT_EQ(status({{"Origin", "http://[::1]:" + port}}), 200);
    EXPECT_EQ(status({{"Referer", "http://portico.localhost:" + port + "/"}}), 200);
    EXPECT_EQ(status({{"Origin", "http://evil.example"}}), 403);
    EXPECT_EQ(status({{"Origin", "http://portico.localhost:1"}}), 403);
    EXPECT_EQ(status({{"Origin", "null"}}), 403);
    EXPECT_EQ(status({{"Origin", "http://app.localhost:" + port}}), 403);
    EXPECT_EQ(status({{"Referer", "http://evil.example/page"}}), 403);
    // Origin decides when both are present.
    EXPECT_EQ(status({{"Origin", "http://evil.example"},
                      {"Referer", "http://portico.localhost:" + port + "/"}}),
              403);
    // Each Origin is judged: one of portico's does not vouch for a foreign one beside it.
    EXPECT_EQ(status({{"Origin", "http://portico.localhost:" + port},
                      {"Origin", "http://evil.example"}}),
              403);
    EXPECT_EQ(status({{"Referer", "http://portico.localhost:" + port + "/"},
                      {"Referer", "http://evil.example/page"}}),
              403);
    EXPECT_EQ(status({{"Origin", "http://localhost:" + port},
                      {"Origin", "http://portico.localhost:" + port}}),
              200);
    // Schemes and hosts compare without case.
    EXPECT_EQ(status({{"Origin", "HTTP://Portico.Localhost:" + port}}), 200);
}

TEST(AdminTest, LoopbackNamesAndHostlessHttp10GetTheDashboard)
{
    origin backend;
    proxy_harness proxy(routes({route("app.localhost", backend.port())}));
    for (const auto* host : {"portico.localhost", "localhost", "127.0.0.1", "[::1]"}) {
        client c(proxy.port());
        const auto res = c.get(fmt::format("{}:{}", host, proxy.port()), "/");
        EXPECT_EQ(res.result_int(), 200) << host;
        EXPECT_NE(res.body().find("app.localhost"), std::string::npos) << host;
        EXPECT_EQ(res[beast::http::field::cache_control], "no-store");
    }
    const auto raw = raw_exchange(proxy.port(), "GET / HTTP/1.0\r\n\r\n");
    EXPECT_TRUE(raw.starts_with("HTTP/1.0 200")) << raw.substr(0, 200);
    EXPECT_NE(raw.find("<title>portico</title>"), std::string::npos);
}

TEST(AdminTest, OnlyGetAndHeadAndKnownPaths)
{
    proxy_harness proxy("routes: []\n");
    client c(proxy.port());
    request post{beast::http::verb::post, "/api/routes", 11};
    post.set(beast::http::field::host, "portico.localhost");
    post.body() = "{}";
    post.prepare_payload();
    const auto res = c.send(post);
    EXPECT_EQ(res.result_int(), 405);
    EXPECT_EQ(res[beast::http::field::allow], "GET, HEAD");
    EXPECT_EQ(res["X-Portico-Error"], "bad_request");
    EXPECT_NE(res.body().find("read-only: use GET or HEAD"), std::string::npos) << res.body();

    // Error pages as every error gets them: HTML for a browser, JSON when asked for.
    client d(proxy.port());
    const auto page = d.get("portico.localhost", "/nope", {{"Accept", "text/html"}});
    EXPECT_EQ(page.result_int(), 404);
    EXPECT_EQ(page["X-Portico-Error"], "no_route");
    EXPECT_TRUE(page[beast::http::field::content_type].starts_with("text/html")) << page;
    EXPECT_NE(page.body().find("no page at /nope"), std::string::npos) << page.body();
    EXPECT_EQ(page.body().find("No routes are configured"), std::string::npos) << page.body();
    const auto head = raw_exchange(proxy.port(), "HEAD /nope HTTP/1.1\r\nHost: portico.localhost\r\n\r\n");
    EXPECT_TRUE(head.starts_with("HTTP/1.1 404 ")) << head;
    EXPECT_TRUE(head.ends_with("\r\n\r\n")) << head; // a head, and no body after it
    client j(proxy.port());
    const auto api = j.get("portico.localhost", "/api/nope", {{"Accept", "application/json"}});
    EXPECT_EQ(api.result_int(), 404);
    EXPECT_EQ(api[beast::http::field::content_type], "application/json");
    EXPECT_NE(api.body().find(R"("status":404,"error":"no_route")"), std::string::npos)
        << api.body();
    // HEAD has no body; the pipelined GET after it is answered on the same connection.
    const auto raw = raw_exchange(proxy.port(),
                                  "HEAD /metrics HTTP/1.1\r\nHost: portico.localhost\r\n\r\n"
                                  "GET /api/health HTTP/1.1\r\nHost: portico.localhost\r\n"
                                  "Connection: close\r\n\r\n");
    const auto first = raw.find("HTTP/1.1 200");
    const auto second = raw.find("HTTP/1.1 200", first + 1);
    EXPECT_NE(second, std::string::npos) << raw;
    EXPECT_NE(raw.find("\"status\":\"ok\""), std::string::npos) << raw;
    EXPECT_EQ(raw.find("# HELP"), std::string::npos) << "HEAD sent a body";
}

TEST(AdminTest, EmptyConfigurationExplainsHowToAddARoute)
{
    proxy_harness proxy("routes: []\n");
    client c(proxy.port());
    const auto res = c.get("portico.localhost", "/");
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_NE(res.body().find("No routes yet"), std::string::npos);
    EXPECT_NE(res.body().find("host: app.localhost"), std::string::npos);
    // It names the file this portico watches.
    EXPECT_NE(res.body().find("/portico.yaml</code> and save"), std::string::npos) << res.body();
    // Works offline: nothing is loaded from another origin.
    EXPECT_EQ(res.body().find("src=\"http"), std::string::npos);
    EXPECT_EQ(res.body().find("href=\"http://cdn"), std::string::npos);
    EXPECT_EQ(res.body().find("href=\"//"), std::string::npos);
    EXPECT_EQ(res.body().find("<link rel=\"stylesheet\""), std::string::npos);
}

TEST(AdminTest, DashboardShowsFailedReload)
{
    proxy_harness proxy("routes: []\n");
    proxy.observatory().record_reload(false, "portico.yaml:3:5: route 1: 'to' is required\n");
    client c(proxy.port());
    const auto res = c.get("portico.localhost", "/");
    EXPECT_NE(res.body().find("portico.yaml:3:5: route 1: &#39;to&#39; is required"),
              std::string::npos)
        << res.body();
    const auto health = get_json(proxy.port(), "/api/health");
    EXPECT_EQ(health.at("config").at("last_error").as_string(),
              "portico.yaml:3:5: route 1: 'to' is required\n");
}

} // namespace
} // namespace portico::test
