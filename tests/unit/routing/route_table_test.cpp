#include "portico/routing/route_table.hpp"

#include <gtest/gtest.h>

#include <chrono>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portico::routing {
namespace {

config::route route_for(std::string host, std::string path = "/")
{
    config::route r;
    r.host = std::move(host);
    r.path = std::move(path);
    r.to.host = "127.0.0.1";
    r.to.port = 5000;
    r.to.text = "127.0.0.1:5000";
    return r;
}

config::route passthrough_for(std::string host)
{
    auto r = route_for(std::move(host));
    r.tls_passthrough = true;
    return r;
}

config::config config_with(std::vector<config::route> routes,
                           std::string admin = "portico.localhost")
{
    config::config cfg;
    for (std::size_t i = 0; i < routes.size(); ++i) {
        routes[i].number = i + 1;
    }
    cfg.routes = std::move(routes);
    cfg.admin = std::move(admin);
    return cfg;
}

route_table table_of(std::vector<config::route> routes, std::string admin = "portico.localhost")
{
    return route_table(config_with(std::move(routes), std::move(admin)));
}

// The 1-based number of the matched route; 0 when the request resolves to no route.
std::size_t matched(const route_table& t, std::string_view host, std::string_view path = "/")
{
    const auto m = t.match(host, path);
    if (m.kind != match_kind::route) {
        return 0;
    }
    return m.route->number;
}

match_kind kind_of(const route_table& t, std::string_view host, std::string_view path = "/")
{
    return t.match(host, path).kind;
}

std::size_t passthrough_number(const route_table& t, std::string_view sni)
{
    const auto* r = t.match_passthrough(sni);
    return r == nullptr ? 0 : r->number;
}

config::route upstream_route(std::string path, bool strip, std::string base)
{
    auto r = route_for("app.localhost", std::move(path));
    r.strip_prefix = strip;
    r.to.base_path = std::move(base);
    return r;
}

// Splits `target` as the proxy does, then builds the upstream target.
std::string upstream_of(const config::route& r, std::string_view target)
{
    const auto split = split_request_target(target);
    EXPECT_TRUE(split.has_value()) << target;
    return split ? upstream_target(r, *split) : std::string();
}

// --- Host precedence -------------------------------------------------------------------

TEST(RouteTableTest, TableTakingTheRoutesOverMatchesAsOneCopyingThem)
{
    const auto cfg = config_with({route_for("app.localhost"), route_for("app.localhost", "/api"),
                                  route_for("*.preview.localhost"),
                                  passthrough_for("db.localhost")},
                                 "Admin.Localhost.");
    const route_table copied(cfg);
    auto routes = cfg.routes;
    const auto* const first = routes.data();
    const route_table taken(std::move(routes), cfg.admin);
    // Taken over, not copied: matches point into the very vector that was handed in.
    EXPECT_EQ(taken.routes().data(), first);
    ASSERT_EQ(taken.routes().size(), cfg.routes.size());
    for (const auto& [host, path] : std::vector<std::pair<std::string, std::string>>{
             {"app.localhost", "/"}, {"app.localhost", "/api/x"}, {"a.b.preview.localhost", "/"},
             {"other.localhost", "/"}, {"admin.localhost", "/"}, {"localhost", "/"}}) {
        EXPECT_EQ(matched(taken, host, path), matched(copied, host, path)) << host << path;
        EXPECT_EQ(taken.match(host, path).kind, copied.match(host, path).kind) << host << path;
    }
    EXPECT_EQ(taken.match("admin.localhost", "/").kind, match_kind::admin);
    ASSERT_NE(taken.match_passthrough("db.localhost"), nullptr);
    EXPECT_EQ(taken.match_passthrough("db.localhost")->host, "db.localhost");
}

TEST(RouteTableTest, PathsAndNamesOfThousandsOfPartsMatchAndCostWhatTheirLengthDoes)
{
    // Each probe hashes its prefix or suffix: probing every one of a request's parts made a
    // path of many segments (or a Host of many labels) cost their square, seconds of a
    // worker for one request. Only parts as long as some route's are probed now.
    const auto t = table_of({route_for("app.localhost"), route_for("app.localhost", "/api"),
                             route_for("*.wild.localhost")});
    std::string segments;
    for (int i = 0; i < 200'000; ++i) {
        segments += "/a";
    }
    std::string labels;
    for (int i = 0; i < 200'000; ++i) {
        labels += "a.";
    }
    const auto started = std::chrono::steady_clock::now();
    EXPECT_EQ(matched(t, "app.localhost", "/api" + segments), 2U);
    EXPECT_EQ(matched(t, "app.localhost", "/apix" + segments), 1U);
    EXPECT_EQ(matched(t, "app.localhost", segments), 1U);
    // A Host that long is no name (HostLongerThanANameCanBeIsInvalid), whatever it ends in.
    EXPECT_EQ(kind_of(t, labels + "wild.localhost"), match_kind::invalid_host);
    EXPECT_EQ(kind_of(t, labels + "other.localhost"), match_kind::invalid_host);
    // A generous bound (the square took tens of seconds), not a benchmark.
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
}

TEST(RouteTableTest, ExactHostBeatsWildcard)
{
    const auto t = table_of({route_for("*.localhost"), route_for("app.localhost")});
    EXPECT_EQ(matched(t, "app.localhost"), 2U);
    EXPECT_EQ(matched(t, "other.localhost"), 1U);
}

TEST(RouteTableTest, LongerWildcardSuffixBeatsShorter)
{
    const auto t = table_of({route_for("*.localhost"), route_for("*.app.localhost")});
    EXPECT_EQ(matched(t, "x.app.localhost"), 2U);
    EXPECT_EQ(matched(t, "a.b.app.localhost"), 2U);
    EXPECT_EQ(matched(t, "x.localhost"), 1U);
    EXPECT_EQ(matched(t, "app.localhost"), 1U);
}

TEST(RouteTableTest, HostSpecificityBeatsPathLength)
{
    const auto t = table_of({route_for("*.localhost", "/api/v2"), route_for("app.localhost")});
    EXPECT_EQ(matched(t, "app.localhost", "/api/v2/items"), 2U);
    EXPECT_EQ(matched(t, "x.localhost", "/api/v2/items"), 1U);
}

TEST(RouteTableTest, WildcardMatchesOneOrMoreLabels)
{
    const auto t = table_of({route_for("*.app.localhost")});
    EXPECT_EQ(matched(t, "a.app.localhost"), 1U);
    EXPECT_EQ(matched(t, "a.b.app.localhost"), 1U);
    EXPECT_EQ(matched(t, "a.b.c.app.localhost"), 1U);
}

TEST(RouteTableTest, WildcardDoesNotMatchBareSuffixOrPartialLabel)
{
    const auto t = table_of({route_for("*.app.localhost")});
    EXPECT_EQ(kind_of(t, "app.localhost"), match_kind::none);
    EXPECT_EQ(kind_of(t, "xapp.localhost"), match_kind::none);
    EXPECT_EQ(kind_of(t, "a.app.localhost.test"), match_kind::none);
}

TEST(RouteTableTest, RequestHostIsNeverAPattern)
{
    const auto t = table_of({route_for("*.app.localhost"), route_for("app.localhost")});
    EXPECT_EQ(kind_of(t, "*.app.localhost"), match_kind::invalid_host);
    EXPECT_EQ(kind_of(t, ".app.localhost"), match_kind::invalid_host);
    EXPECT_EQ(kind_of(t, "a..app.localhost"), match_kind::invalid_host);
}

TEST(RouteTableTest, HostMatchIgnoresCaseTrailingDotAndPort)
{
    const auto t = table_of({route_for("app.localhost"), route_for("*.web.localhost")});
    EXPECT_EQ(matched(t, "APP.LocalHost"), 1U);
    EXPECT_EQ(matched(t, "app.localhost."), 1U);
    EXPECT_EQ(matched(t, "app.localhost:7080"), 1U);
    EXPECT_EQ(matched(t, "App.Localhost.:443"), 1U);
    EXPECT_EQ(matched(t, "app.localhost:"), 1U); // port = *DIGIT (RFC 3986 §3.2.3)
    EXPECT_EQ(matched(t, "X.Web.LOCALHOST.:8443"), 2U);
}

TEST(RouteTableTest, IpLiteralHostsMatchWithPorts)
{
    const auto t =
        table_of({route_for("::1", "/v6"), route_for("127.0.0.1", "/v4"), route_for("fd00::a")});
    EXPECT_EQ(matched(t, "[::1]", "/v6"), 1U);
    EXPECT_EQ(matched(t, "[::1]:7080", "/v6/x"), 1U);
    EXPECT_EQ(matched(t, "127.0.0.1:7080", "/v4"), 2U);
    EXPECT_EQ(matched(t, "[FD00::A]:7080"), 3U);
}

TEST(RouteTableTest, InvalidHostMatchesNothing)
{
    const auto t = table_of({route_for("*.localhost"), route_for("app.localhost")});
    for (const std::string_view host :
         {"", ":7080", "app.localhost:http", "app localhost", "[::1", "[::1]x",
          "[::1]:port", "::1", "[]", "app.localhost, evil.example",
          "app.localhost@evil.example"}) {
        EXPECT_EQ(kind_of(t, host), match_kind::invalid_host) << host;
    }
}

TEST(RouteTableTest, HostLongerThanANameCanBeIsInvalid)
{
    // No route can name more than 253 characters (the configuration refuses it), and a
    // wildcard must not make such a Host a name to forward.
    const auto t = table_of({route_for("*.localhost")});
    const auto label = std::string(63, 'a') + ".";
    const auto longest = label + label + label + std::string(51, 'b') + ".localhost"; // 253
    EXPECT_EQ(kind_of(t, longest), match_kind::route);
    EXPECT_EQ(kind_of(t, longest + ".:7080"), match_kind::route);
    EXPECT_EQ(kind_of(t, "c" + longest), match_kind::invalid_host);
}

// --- Path precedence -------------------------------------------------------------------

TEST(RouteTableTest, LongestPrefixWins)
{
    const auto t = table_of({route_for("app.localhost"), route_for("app.localhost", "/api"),
                             route_for("app.localhost", "/api/users")});
    EXPECT_EQ(matched(t, "app.localhost", "/"), 1U);
    EXPECT_EQ(matched(t, "app.localhost", "/index.html"), 1U);
    EXPECT_EQ(matched(t, "app.localhost", "/api"), 2U);
    EXPECT_EQ(matched(t, "app.localhost", "/api/orders/1"), 2U);
    EXPECT_EQ(matched(t, "app.localhost", "/api/users"), 3U);
    EXPECT_EQ(matched(t, "app.localhost", "/api/users/1"), 3U);
}

TEST(RouteTableTest, PrefixMatchesOnSegmentBoundary)
{
    const auto t = table_of({route_for("app.localhost", "/api")});
    EXPECT_EQ(matched(t, "app.localhost", "/api"), 1U);
    EXPECT_EQ(matched(t, "app.localhost", "/api/"), 1U);
    EXPECT_EQ(matched(t, "app.localhost", "/api/x"), 1U);
    EXPECT_EQ(matched(t, "app.localhost", "/api//x"), 1U);
    EXPECT_EQ(kind_of(t, "app.localhost", "/apix"), match_kind::none);
    EXPECT_EQ(kind_of(t, "app.localhost", "/ap"), match_kind::none);
    EXPECT_EQ(kind_of(t, "app.localhost", "/"), match_kind::none);
}

TEST(RouteTableTest, PathsMatchCaseSensitively)
{
    const auto t = table_of({route_for("app.localhost", "/api")});
    EXPECT_EQ(kind_of(t, "app.localhost", "/API"), match_kind::none);
    EXPECT_EQ(kind_of(t, "app.localhost", "/Api/x"), match_kind::none);
}

TEST(RouteTableTest, EncodedSlashIsNotASegmentBoundary)
{
    const auto t =
        table_of({route_for("app.localhost", "/api"), route_for("app.localhost", "/api/v1")});
    const auto split = split_request_target("/api%2fv1/users");
    ASSERT_TRUE(split.has_value());
    EXPECT_EQ(split->path, "/api%2Fv1/users");
    EXPECT_EQ(kind_of(t, "app.localhost", split->path), match_kind::none);
    EXPECT_EQ(matched(t, "app.localhost", "/api/v1%2Fusers"), 1U);
}

// --- Fallback across hosts -------------------------------------------------------------

// An exact host that has routes, none of them for the path, falls back to the next most
// specific host covering the name: adding `/api` for one name keeps the rest of that name
// on the wildcard (nginx/Caddy users' expectation).
TEST(RouteTableTest, ExactHostWithoutMatchingPathFallsBackToWildcard)
{
    const auto t = table_of({route_for("*.localhost"), route_for("app.localhost", "/api")});
    EXPECT_EQ(matched(t, "app.localhost", "/api/users"), 2U);
    EXPECT_EQ(matched(t, "app.localhost", "/x"), 1U);
    EXPECT_EQ(matched(t, "app.localhost", "/"), 1U);
}

TEST(RouteTableTest, WildcardWithoutMatchingPathFallsBackToShorterWildcard)
{
    const auto t = table_of({route_for("*.localhost"), route_for("*.app.localhost", "/api"),
                             route_for("x.app.localhost", "/admin")});
    EXPECT_EQ(matched(t, "x.app.localhost", "/admin"), 3U);
    EXPECT_EQ(matched(t, "x.app.localhost", "/api"), 2U);
    EXPECT_EQ(matched(t, "x.app.localhost", "/other"), 1U);
}

TEST(RouteTableTest, FallbackPrefersSpecificHostOverLongerPath)
{
    const auto t =
        table_of({route_for("*.localhost", "/api/users"), route_for("app.localhost", "/api")});
    EXPECT_EQ(matched(t, "app.localhost", "/api/users"), 2U);
}

TEST(RouteTableTest, NoHostCoveringThePathMatchesNothing)
{
    const auto t = table_of({route_for("app.localhost", "/api"), route_for("*.localhost", "/ws")});
    EXPECT_EQ(kind_of(t, "app.localhost", "/x"), match_kind::none);
    EXPECT_EQ(kind_of(t, "other.localhost", "/x"), match_kind::none);
    EXPECT_EQ(kind_of(t, "example.com"), match_kind::none);
}

TEST(RouteTableTest, DuplicateHostAndPathKeepsFirst)
{
    const auto t = table_of({route_for("app.localhost"), route_for("app.localhost")});
    EXPECT_EQ(matched(t, "app.localhost"), 1U);
    EXPECT_EQ(t.exact_hosts(), std::vector<std::string>{"app.localhost"});
}

// --- Admin -----------------------------------------------------------------------------

TEST(RouteTableTest, AdminHostResolvesToAdminOnEveryPath)
{
    const auto t = table_of({route_for("app.localhost")});
    for (const std::string_view host :
         {"portico.localhost", "PORTICO.localhost.", "portico.localhost:7080"}) {
        const auto m = t.match(host, "/api/routes");
        EXPECT_EQ(m.kind, match_kind::admin) << host;
        EXPECT_EQ(m.route, nullptr);
    }
    EXPECT_EQ(t.admin_host(), "portico.localhost");
}

TEST(RouteTableTest, AdminHostBeatsWildcard)
{
    const auto t = table_of({route_for("*.localhost")});
    EXPECT_EQ(kind_of(t, "portico.localhost", "/metrics"), match_kind::admin);
    EXPECT_EQ(matched(t, "x.portico.localhost"), 1U);
    EXPECT_EQ(matched(t, "app.localhost"), 1U);
}

TEST(RouteTableTest, CustomAdminHostIsNormalised)
{
    const auto t = table_of({}, "Dash.Localhost.");
    EXPECT_EQ(t.admin_host(), "dash.localhost");
    EXPECT_EQ(kind_of(t, "dash.localhost:7080"), match_kind::admin);
    EXPECT_EQ(kind_of(t, "portico.localhost"), match_kind::none);
}

TEST(RouteTableTest, LoopbackNamesWithoutRouteResolveToAdmin)
{
    const auto t = table_of({route_for("app.localhost")});
    for (const std::string_view host : {"localhost", "LOCALHOST:7080", "localhost.", "127.0.0.1",
                                        "127.0.0.1:7080", "127.1.2.3", "[::1]", "[::1]:7080",
                                        "[0::1]", "[0:0:0:0:0:0:0:1]:7080"}) {
        EXPECT_EQ(kind_of(t, host, "/x"), match_kind::admin) << host;
    }
}

TEST(RouteTableTest, OtherUnroutedHostsResolveToNothing)
{
    const auto t = table_of({route_for("app.localhost")});
    for (const std::string_view host :
         {"example.com", "foo.localhost", "10.0.0.1", "128.0.0.1", "0177.0.0.1", "127.1",
          "127.0.0.256", "127.0.0.1.5", "[::2]", "localhost.localdomain"}) {
        EXPECT_EQ(kind_of(t, host), match_kind::none) << host;
    }
}

TEST(RouteTableTest, LoopbackRouteWinsOverAdmin)
{
    const auto t = table_of({route_for("localhost"), route_for("127.0.0.1"), route_for("::1")});
    EXPECT_EQ(matched(t, "localhost:7080", "/x"), 1U);
    EXPECT_EQ(matched(t, "127.0.0.1", "/x"), 2U);
    EXPECT_EQ(matched(t, "[::1]:7080", "/x"), 3U);
    EXPECT_EQ(kind_of(t, "127.0.0.2"), match_kind::admin);
}

// Consistent with host fallback: the admin pages are the last resort of a loopback name,
// below the routes it has.
TEST(RouteTableTest, LoopbackPathMissFallsBackToAdmin)
{
    const auto t = table_of({route_for("localhost", "/api")});
    EXPECT_EQ(matched(t, "localhost", "/api/x"), 1U);
    EXPECT_EQ(kind_of(t, "localhost", "/"), match_kind::admin);
}

TEST(RouteTableTest, WildcardNeverCapturesLoopbackNames)
{
    const auto t = table_of({route_for("*.localhost"), route_for("*.0.0.1")});
    EXPECT_EQ(kind_of(t, "localhost"), match_kind::admin);
    EXPECT_EQ(kind_of(t, "127.0.0.1"), match_kind::admin);
    EXPECT_EQ(kind_of(t, "10.0.0.1"), match_kind::none);
}

// --- TLS passthrough -------------------------------------------------------------------

TEST(RouteTableTest, PassthroughRouteIsStillMatchedForHttp)
{
    const auto t = table_of({passthrough_for("db.localhost"), route_for("*.localhost")});
    const auto m = t.match("db.localhost", "/anything");
    ASSERT_EQ(m.kind, match_kind::route);
    EXPECT_TRUE(m.route->tls_passthrough);
}

TEST(RouteTableTest, MatchPassthroughFindsExactAndWildcardNames)
{
    const auto t = table_of({passthrough_for("db.localhost"), passthrough_for("*.pg.localhost"),
                             route_for("app.localhost")});
    EXPECT_EQ(passthrough_number(t, "db.localhost"), 1U);
    EXPECT_EQ(passthrough_number(t, "DB.Localhost."), 1U);
    EXPECT_EQ(passthrough_number(t, "a.pg.localhost"), 2U);
    EXPECT_EQ(passthrough_number(t, "a.b.pg.localhost"), 2U);
    EXPECT_EQ(passthrough_number(t, "pg.localhost"), 0U);
    EXPECT_EQ(passthrough_number(t, "app.localhost"), 0U);
    EXPECT_EQ(passthrough_number(t, "unknown.localhost"), 0U);
    EXPECT_EQ(passthrough_number(t, ""), 0U);
}

TEST(RouteTableTest, MatchPassthroughFollowsHostSpecificity)
{
    const auto t = table_of({passthrough_for("*.localhost"), route_for("app.localhost", "/api"),
                             route_for("*.web.localhost"), passthrough_for("db.web.localhost")});
    // A more specific terminating host keeps the TLS: its paths are only known afterwards.
    EXPECT_EQ(passthrough_number(t, "app.localhost"), 0U);
    EXPECT_EQ(passthrough_number(t, "x.web.localhost"), 0U);
    EXPECT_EQ(passthrough_number(t, "db.web.localhost"), 4U);
    EXPECT_EQ(passthrough_number(t, "other.localhost"), 1U);
}

TEST(RouteTableTest, MatchPassthroughNeverTakesTheAdminHost)
{
    const auto t = table_of({passthrough_for("*.localhost")});
    EXPECT_EQ(passthrough_number(t, "portico.localhost"), 0U);
    EXPECT_EQ(passthrough_number(t, "localhost"), 0U);
    EXPECT_EQ(passthrough_number(t, "x.localhost"), 1U);
}

// --- Served names ----------------------------------------------------------------------

TEST(RouteTableTest, ServedNamesAreRoutedAdminAndLoopbackNames)
{
    const auto t = table_of({route_for("app.localhost"), route_for("*.preview.localhost"),
                             route_for("api.localhost", "/v1"), passthrough_for("db.localhost")});
    for (const std::string_view name :
         {"app.localhost", "APP.localhost.", "x.preview.localhost", "a.b.preview.localhost",
          "api.localhost", "portico.localhost", "localhost", "127.0.0.1"}) {
        EXPECT_TRUE(t.is_served_name(name)) << name;
    }
    for (const std::string_view name : {"preview.localhost", "db.localhost", "unknown.localhost",
                                        "example.com", "", "*.preview.localhost"}) {
        EXPECT_FALSE(t.is_served_name(name)) << name;
    }
}

TEST(RouteTableTest, PassthroughHostHidesTerminatingWildcard)
{
    const auto t = table_of({route_for("*.localhost"), passthrough_for("db.localhost")});
    EXPECT_FALSE(t.is_served_name("db.localhost"));
    EXPECT_TRUE(t.is_served_name("x.localhost"));
}

TEST(RouteTableTest, PassthroughWildcardDoesNotHideServedExactHost)
{
    const auto t = table_of({passthrough_for("*.localhost"), route_for("app.localhost", "/api")});
    EXPECT_TRUE(t.is_served_name("app.localhost"));
    EXPECT_TRUE(t.is_served_name("portico.localhost"));
    EXPECT_FALSE(t.is_served_name("x.localhost"));
}

// --- Introspection ---------------------------------------------------------------------

TEST(RouteTableTest, HostListsAreDistinctInFileOrder)
{
    const auto t =
        table_of({route_for("b.localhost"), route_for("*.z.localhost"), route_for("a.localhost"),
                  route_for("b.localhost", "/api"), route_for("*.a.localhost"),
                  route_for("*.z.localhost", "/x"), passthrough_for("db.localhost")});
    EXPECT_EQ(t.exact_hosts(),
              (std::vector<std::string>{"b.localhost", "a.localhost", "db.localhost"}));
    EXPECT_EQ(t.wildcard_hosts(), (std::vector<std::string>{"*.z.localhost", "*.a.localhost"}));
    EXPECT_EQ(t.routes().size(), 7U);
}

TEST(RouteTableTest, EmptyTableServesOnlyTheAdmin)
{
    const auto t = table_of({});
    EXPECT_TRUE(t.routes().empty());
    EXPECT_TRUE(t.exact_hosts().empty());
    EXPECT_TRUE(t.wildcard_hosts().empty());
    EXPECT_EQ(kind_of(t, "portico.localhost"), match_kind::admin);
    EXPECT_EQ(kind_of(t, "app.localhost"), match_kind::none);
}

TEST(RouteTableTest, TableOwnsItsRoutes)
{
    std::optional<config::config> cfg =
        config_with({route_for("app.localhost"), route_for("app.localhost", "/api")});
    const route_table t(*cfg);
    cfg.reset();
    const auto m = t.match("app.localhost", "/api/x");
    ASSERT_EQ(m.kind, match_kind::route);
    EXPECT_EQ(m.route, &t.routes()[1]);
    EXPECT_EQ(m.route->path, "/api");
}

TEST(RouteTableTest, MovedTableKeepsMatchesValid)
{
    auto first = table_of({route_for("app.localhost")});
    const auto* before = first.match("app.localhost", "/").route;
    route_table second(std::move(first));
    EXPECT_EQ(second.match("app.localhost", "/").route, before);
    route_table third = table_of({});
    third = std::move(second);
    EXPECT_EQ(third.match("app.localhost", "/").route, before);
}

// --- Request targets -------------------------------------------------------------------

TEST(SplitRequestTargetTest, SplitsPathAndQuery)
{
    const auto s = split_request_target("/a/b?x=1&y=2");
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->path, "/a/b");
    EXPECT_EQ(s->query, "?x=1&y=2");
    const auto bare = split_request_target("/a");
    ASSERT_TRUE(bare.has_value());
    EXPECT_EQ(bare->query, "");
    const auto empty_query = split_request_target("/a?");
    ASSERT_TRUE(empty_query.has_value());
    EXPECT_EQ(empty_query->query, "?");
}

TEST(SplitRequestTargetTest, KeepsQueryVerbatim)
{
    const auto s = split_request_target("/a/../b?next=/x/../y&c=%7e%2f?&d");
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->path, "/b");
    EXPECT_EQ(s->query, "?next=/x/../y&c=%7e%2f?&d");
}

TEST(SplitRequestTargetTest, RemovesDotSegments)
{
    EXPECT_EQ(split_request_target("/a/./b/../c").value().path, "/a/c");
    EXPECT_EQ(split_request_target("/../../etc/passwd").value().path, "/etc/passwd");
    EXPECT_EQ(split_request_target("/api/..").value().path, "/");
    EXPECT_EQ(split_request_target("/a/%2e%2E/b").value().path, "/b");
}

TEST(SplitRequestTargetTest, DecodesUnreservedAndKeepsEncodedSlash)
{
    EXPECT_EQ(split_request_target("/%7Euser/%41%62%2d").value().path, "/~user/Ab-");
    EXPECT_EQ(split_request_target("/a%2Fb").value().path, "/a%2Fb");
    EXPECT_EQ(split_request_target("/a%2fb").value().path, "/a%2Fb");
    EXPECT_EQ(split_request_target("/caf%c3%a9").value().path, "/caf%C3%A9");
}

TEST(SplitRequestTargetTest, RejectsBadPercentEncoding)
{
    for (const std::string_view target : {"/%", "/%4", "/a%zz", "/a%4g", "/%%41", "/%?q"}) {
        EXPECT_FALSE(split_request_target(target).has_value()) << target;
    }
}

TEST(SplitRequestTargetTest, RejectsWhatIsNotOriginForm)
{
    for (const std::string_view target : std::initializer_list<std::string_view>{
             "", "*", "?q=1", "a/b", "http://app.localhost/", "/a#frag", "/a?q#f", "/a b",
             std::string_view("/a\0b", 4), "/a\x7f"}) {
        EXPECT_FALSE(split_request_target(target).has_value()) << target;
    }
}

// --- Upstream targets ------------------------------------------------------------------

TEST(UpstreamTargetTest, WithoutStripOrBaseKeepsPathAndQuery)
{
    const auto r = upstream_route("/api", false, "");
    EXPECT_EQ(upstream_of(r, "/api/x?q=1"), "/api/x?q=1");
    EXPECT_EQ(upstream_of(r, "/api"), "/api");
}

TEST(UpstreamTargetTest, StripPrefixLeavesTheRest)
{
    const auto r = upstream_route("/api", true, "");
    EXPECT_EQ(upstream_of(r, "/api"), "/");
    EXPECT_EQ(upstream_of(r, "/api/"), "/");
    EXPECT_EQ(upstream_of(r, "/api/users"), "/users");
    EXPECT_EQ(upstream_of(r, "/api/users/1/"), "/users/1/");
    EXPECT_EQ(upstream_of(r, "/api?q=1"), "/?q=1");
    EXPECT_EQ(upstream_of(r, "/api/x?q=1"), "/x?q=1");
}

TEST(UpstreamTargetTest, StripPrefixNeverLeavesATargetThatLooksLikeAHost)
{
    const auto r = upstream_route("/api", true, "");
    EXPECT_EQ(upstream_of(r, "/api//evil.example/x"), "/evil.example/x");
    EXPECT_EQ(upstream_of(r, "/api///x?q=1"), "/x?q=1");
    EXPECT_EQ(upstream_of(r, "/api/\\evil.example/x"), "/evil.example/x");
    EXPECT_EQ(upstream_of(r, "/api/\\/\\x"), "/x");
    EXPECT_EQ(upstream_of(r, "/api/a\\b"), "/a\\b");
    EXPECT_EQ(upstream_of(r, "/api//"), "/");
    EXPECT_EQ(upstream_of(upstream_route("/api", true, "/v1"), "/api//x"), "/v1//x");
    // What the client sent without a prefix taken off goes as it came.
    EXPECT_EQ(upstream_of(upstream_route("/", false, ""), "//x"), "//x");
}

TEST(UpstreamTargetTest, StripNestedPrefix)
{
    const auto r = upstream_route("/api/v2", true, "");
    EXPECT_EQ(upstream_of(r, "/api/v2/users"), "/users");
    EXPECT_EQ(upstream_of(r, "/api/v2"), "/");
}

TEST(UpstreamTargetTest, StripThenPrependBasePath)
{
    const auto r = upstream_route("/api", true, "/v1");
    EXPECT_EQ(upstream_of(r, "/api/x"), "/v1/x");
    EXPECT_EQ(upstream_of(r, "/api"), "/v1/");
    EXPECT_EQ(upstream_of(r, "/api?q=1"), "/v1/?q=1");
}

TEST(UpstreamTargetTest, BasePathWithoutStripKeepsFullPath)
{
    const auto r = upstream_route("/api", false, "/v1");
    EXPECT_EQ(upstream_of(r, "/api/x"), "/v1/api/x");
    EXPECT_EQ(upstream_of(r, "/api?q=1"), "/v1/api?q=1");
}

TEST(UpstreamTargetTest, RootRouteStripsNothing)
{
    const auto plain = upstream_route("/", true, "");
    EXPECT_EQ(upstream_of(plain, "/x/y?z"), "/x/y?z");
    EXPECT_EQ(upstream_of(plain, "/"), "/");
    const auto based = upstream_route("/", true, "/v1");
    EXPECT_EQ(upstream_of(based, "/x"), "/v1/x");
    EXPECT_EQ(upstream_of(based, "/"), "/v1/");
}

TEST(UpstreamTargetTest, SendsTheNormalisedPath)
{
    const auto r = upstream_route("/api", true, "/v1");
    EXPECT_EQ(upstream_of(r, "/api/a/../%7Eb%2f?x=%7E"), "/v1/~b%2F?x=%7E");
}

} // namespace
} // namespace portico::routing
